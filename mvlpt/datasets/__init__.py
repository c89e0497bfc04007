"""Getting the ELEVATER data onto disk and reading it back.

One job per module:

* :mod:`.catalog` the package data: ELEVATER's tasks.json, its manifest, the routes table;
* :mod:`.paths`   where data lives (``--data-dir`` > ``$MVLPT_DATA_DIR`` > ``~/.cache/mvlpt/data``);
* :mod:`.archives` open zip/tar handles per process (reopened after fork);
* :mod:`.labels`  mapping a source's class names onto ELEVATER's class order, by name;
* :mod:`.iris`    ELEVATER's own layout (IRIS/COCO index files, images in zip archives);
* :mod:`.wds`     webdataset tar shards (the CLIP_benchmark copies on the Hugging Face hub);
* :mod:`.tv`      torchvision's downloaders and on-disk formats;
* :mod:`.manual`  layouts for data that must be fetched by hand (hateful-memes);
* :mod:`.lock`    the lock file: sha256 of every fetched file, verified by ``mvlpt data check``;
* :mod:`.routes`  the routes table and ``fetch`` (download with progress, offline -> one sentence).
"""
