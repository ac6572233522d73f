"""Helpers shared by the tests and the benchmarks (never shipped; no pytest here):

- ``registry``: the cached CNCF distribution registry on a free 127.0.0.1 port
- ``private_cluster``: a local cluster in a state directory of its own
- ``pipeline``: the CI templates' pipeline run by gitlab-ci-local
"""
