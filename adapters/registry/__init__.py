"""The registry side: pull, push, login and logout against an OCI distribution registry.

    reference.py   docker's reference rules (`busybox` -> docker.io/library/busybox:latest)
    auth.py        credentials in docker's config.json, WWW-Authenticate challenges, tokens
    client.py      the distribution API over HTTP(S): manifests, blobs, uploads
    pull.py        manifest -> platform -> config -> layers fetched in parallel and staged
    push.py        layers (HEAD, mount, upload), config, manifest PUT
    adapter.py     the RegistryPort core/distribution.py drives (one object per command)

The engine side (what is recorded, which layers are missing) is core/distribution.py.
"""
