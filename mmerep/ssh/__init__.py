"""SSH into environments through the API server's port-forward.

``hosts`` parses ``<env>-<component>.<profile>.<cluster>``; ``config`` builds the client's
``~/.ssh/config`` block and known_hosts (pure); ``pump`` copies bytes between the proxy's
stdin/stdout and a port-forward; ``proxy`` ties them together for ``mme-rep ssh proxy``.
The port-forward itself is ``mmerep.portforward``.
"""
