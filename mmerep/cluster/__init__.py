"""The embedded local cluster: binaries built from pinned Go modules, run by KWOK."""
