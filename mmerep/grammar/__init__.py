"""The grammars users write, one module each, used everywhere they are read:

- ``oci``: image references, registry hosts, repository paths (distribution's grammar)
- ``names``: Kubernetes names (DNS labels and subdomains) and label keys/values
- ``assignments``: ``KEY=VALUE`` options (``--set``, ``--var``, ``--node-selector``)
- sizes and CPU: ``mmerep.quantity`` (Kubernetes quantities; ``G`` is 10^9, ``Gi`` 2^30)
"""
