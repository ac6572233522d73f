"""The local-SSD volume provisioner: a controller that reserves node-local disk space for
claims and creates their PersistentVolumes, and a node agent that prepares, measures and
wipes the directories. It talks to Kubernetes only through ``mmerep.kube``.
"""

DEFAULT_NAME = "local-ssd.mme-rep.io"
