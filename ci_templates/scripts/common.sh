# mme-rep CI: helpers shared by every job (sourced, POSIX sh; runs in the buildah, trivy
# and skopeo images alike). Settings come from MMEREP_* variables; see ci_templates/README.md.
# Credentials are never printed: no `set -x` anywhere in these scripts.

mmerep_log() { printf '[mme-rep] %s\n' "$*" >&2; }

mmerep_die() {
  printf '[mme-rep] ERROR: %s\n' "$*" >&2
  exit 1
}

mmerep_true() {
  case "$1" in
    true | TRUE | True | 1 | yes) return 0 ;;
    *) return 1 ;;
  esac
}

# "false" only when MMEREP_TLS_VERIFY says so (a plain-HTTP registry on 127.0.0.1).
mmerep_tls_verify() {
  if mmerep_true "${MMEREP_TLS_VERIFY:-true}"; then echo true; else echo false; fi
}

# htcondor-batch -> HTCONDOR_BATCH: the prefix of its variables in build.env.
mmerep_var_prefix() { printf '%s' "$1" | tr 'abcdefghijklmnopqrstuvwxyz-' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ_'; }

# processor | <flavour> -> REGISTRY/PROJECT/<kind>/IMAGE_NAME (what `env deploy` expects).
mmerep_repository() {
  [ -n "${MMEREP_REGISTRY:-}" ] || mmerep_die "MMEREP_REGISTRY is empty: set the registry (input registry)"
  [ -n "${MMEREP_PROJECT:-}" ] || mmerep_die "MMEREP_PROJECT is empty: set the registry project (input project)"
  [ -n "${MMEREP_IMAGE_NAME:-}" ] || mmerep_die "MMEREP_IMAGE_NAME is empty: set the image name (input image_name)"
  printf '%s/%s/%s/%s' "$MMEREP_REGISTRY" "$MMEREP_PROJECT" "$1" "$MMEREP_IMAGE_NAME"
}

# The enabled flavours, one per word ("htcondor-batch,interactive" -> "htcondor-batch interactive").
mmerep_flavours() {
  case "${MMEREP_FLAVOURS:-}" in
    "" | none) return 0 ;;
  esac
  printf '%s' "$MMEREP_FLAVOURS" | tr ',' ' '
}

# The digest repo:tag has in the registry now (skopeo; the manifest's own sha256), in
# $mmerep_digest. Returns 0 when found, 1 when the registry has no such tag, 2 on any
# other error (its message in $mmerep_error).
mmerep_remote_digest() {
  mmerep_digest="" mmerep_error=""
  rd_raw="${TMPDIR:-/tmp}/mmerep-manifest-${CI_JOB_ID:-local}-$$"
  if mmerep_error=$(skopeo inspect --raw --tls-verify="$(mmerep_tls_verify)" "docker://$1" 2>&1 >"$rd_raw"); then
    mmerep_digest="sha256:$(sha256sum "$rd_raw" | cut -d' ' -f1)"
    rm -f "$rd_raw"
    return 0
  fi
  rm -f "$rd_raw"
  case "$mmerep_error" in
    *"manifest unknown"* | *"not found"* | *"NOT_FOUND"* | *"name unknown"*) return 1 ;;
  esac
  return 2
}

# The digest a build job left in the dotenv report: ${PREFIX}_DIGEST.
mmerep_digest_of() {
  eval "printf '%s' \"\${$(mmerep_var_prefix "$1")_DIGEST:-}\""
}

# Registry credentials from CI variables into a containers-auth.json file (the format
# buildah, skopeo and kaniko read); no daemon, no `docker login`. GitLab's own registry
# credentials are used when the target is $CI_REGISTRY and no others are given.
mmerep_auth() {
  user=${MMEREP_REGISTRY_USER:-}
  password=${MMEREP_REGISTRY_PASSWORD:-}
  if [ -z "$user$password" ] && [ -n "${CI_REGISTRY:-}" ] && [ "${MMEREP_REGISTRY:-}" = "$CI_REGISTRY" ]; then
    user=${CI_REGISTRY_USER:-}
    password=${CI_REGISTRY_PASSWORD:-}
  fi
  if [ -z "$user$password" ]; then
    unset user password
    return 0
  fi
  [ -n "$user" ] && [ -n "$password" ] \
    || mmerep_die "set both MMEREP_REGISTRY_USER and MMEREP_REGISTRY_PASSWORD (masked CI variables), or neither"
  if [ -z "${REGISTRY_AUTH_FILE:-}" ]; then
    REGISTRY_AUTH_FILE="${TMPDIR:-/tmp}/mmerep-auth-${CI_JOB_ID:-$$}.json"
    # Removed when the job's shell ends, failed or not.
    trap 'rm -f "$REGISTRY_AUTH_FILE"' EXIT
  fi
  export REGISTRY_AUTH_FILE
  token=$(printf '%s:%s' "$user" "$password" | base64 | tr -d '\n')
  (umask 077 && printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$MMEREP_REGISTRY" "$token" >"$REGISTRY_AUTH_FILE")
  # trivy reads its own variables (exported for this job's shell only).
  TRIVY_USERNAME=$user
  TRIVY_PASSWORD=$password
  export TRIVY_USERNAME TRIVY_PASSWORD
  unset user password token
  mmerep_log "registry credentials for $MMEREP_REGISTRY written to $REGISTRY_AUTH_FILE"
}
