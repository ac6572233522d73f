"""Kubernetes names (apimachinery's validation): DNS labels and subdomains, label keys
and values."""

from __future__ import annotations

import re

# RFC 1123 label: namespaces, most object names.
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
# RFC 1035 label: starts with a letter (Services; hence environment names, which prefix them).
DNS_1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
DNS_SUBDOMAIN = re.compile(
    rf"(?=.{{1,253}}$){DNS_LABEL.pattern}(?:\.{DNS_LABEL.pattern})*", re.ASCII)
# A label key's name part (after an optional ``prefix/``), and a label value.
LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", re.ASCII)
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", re.ASCII)
