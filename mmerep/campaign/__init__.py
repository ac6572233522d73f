"""Campaigns across several clusters: how much to deploy where, and when the work ends.

- ``plan``: pure arithmetic: work, deadline and each member's room -> executors per
  member, the end date with what is deployed now, and by how much a deadline is missed
- ``placement``: pure choice of the member with the most room for an environment
- ``capacity``: the gateway read of each member's nodes and pods (free CPU and memory)
"""
