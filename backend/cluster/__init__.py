"""Scale-out on Ray: a pool of job workers (one actor per GPU, or per CPU slot).

    worker   the Ray actor that runs the same job handlers as the in-process server,
             keeping its guidance models and avatar contexts warm between jobs
    pool     the front-end side: starts/joins a Ray cluster, places actors, puts each
             avatar into the object store once (by content hash), runs a job on a
             slot with progress, cancel, a deadline, and replacement of dead actors

Ray is imported only here (lazily by the server and the batch CLI), so a server
started without ``--ray`` never loads it.
"""
