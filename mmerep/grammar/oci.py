"""The OCI image reference grammar (distribution/reference/regexp.go), compiled once."""

from __future__ import annotations

import re

_ALNUM = r"[a-z0-9]+"
PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
REMOTE_NAME = rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_TAIL = rf"(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?"

# host[:port]/path/name[:tag][@digest]
REFERENCE = re.compile(rf"(?P<name>(?:{DOMAIN}/)?{REMOTE_NAME}){_TAIL}", re.ASCII)
# path/name[:tag][@digest], without a host (expanded from a profile)
RELATIVE = re.compile(rf"(?P<name>{REMOTE_NAME}){_TAIL}", re.ASCII)
REGISTRY = re.compile(DOMAIN, re.ASCII)
REPOSITORY = re.compile(REMOTE_NAME, re.ASCII)  # e.g. a registry project "mme-rep/s3"
PATH_PART = re.compile(PATH_COMPONENT, re.ASCII)  # one part: an image name, a flavour

IMAGE_FORMS = ("use NAME:TAG, e.g. sentinel3:v0.1.0, or a full reference, e.g. "
               "harbor.example.org/mme-rep/htcondor-batch/sentinel3:v0.1.0")


def has_host(image: str) -> bool:
    """Whether the first path part is a registry host: it has a "." or ":", or is
    "localhost" (distribution's rule)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def split_host(image: str) -> tuple[str, str]:
    """``harbor.example.org/p/sentinel3:v1`` -> (``harbor.example.org``, ``p/sentinel3:v1``);
    ("", image) when the first part is no host."""
    if not has_host(image):
        return "", image
    host, _, rest = image.partition("/")
    return host, rest


def image_name(image: str) -> str | None:
    """The last part of the repository: ``harbor/p/t/sentinel3:v1@sha256:..`` ->
    ``sentinel3``; None when ``image`` is no reference."""
    match = (REFERENCE if has_host(image) else RELATIVE).fullmatch(image)
    if match is None:
        return None
    return str(match["name"]).rpartition("/")[2]
