# mme-rep CI: build one image (the processor, or a flavour FROM the processor pinned by
# digest), push it under a candidate tag, and write its digest to build.env.
#   mmerep_build processor | htcondor-batch | interactive | jupyter
#
# The candidate tag names the build's inputs: build-<hash of the Containerfile, the
# context's files, the build arguments and labels>. When the registry already has that
# tag (a retried pipeline, a re-run of the same commit), its image is reused: nothing is
# built or pushed. Scheduled pipelines and MMEREP_REBUILD=always build anyway.

# buildah with the storage settings of this job (vfs by default: no fuse, no privileges).
mmerep_buildah() {
  if [ -n "${MMEREP_BUILDAH_RUNROOT:-}" ]; then set -- --runroot "$MMEREP_BUILDAH_RUNROOT" "$@"; fi
  if [ -n "${MMEREP_BUILDAH_ROOT:-}" ]; then set -- --root "$MMEREP_BUILDAH_ROOT" "$@"; fi
  buildah --storage-driver "${MMEREP_STORAGE_DRIVER:-vfs}" "$@"
}

# The candidate tag without a build key: one per pipeline. The publish job gives the
# scanned digest its immutable tags.
mmerep_candidate_tag() { printf 'ci-%s' "${CI_PIPELINE_ID:-local}"; }

# The build key (32 hex digits) of Containerfile $1, context $2 and build options $3...:
# the context as a normalised tar (names, modes, contents; no times, owners or .git), so
# a fresh checkout of the same commit gives the same key. Nothing is printed when the
# job's image has no GNU tar (busybox, kaniko): then every build runs.
mmerep_build_key() {
  bk_file=$1 bk_context=$2
  shift 2
  tar --version 2>/dev/null | grep -q 'GNU tar' || return 0
  {
    printf '%s\n' "mme-rep build key 1" "${MMEREP_ENGINE:-buildah}" "$@"
    sha256sum <"$bk_file"
    # A tar that fails (an unreadable file) salts the key, so it can never match.
    tar --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --exclude=./.git -C "$bk_context" -cf - . 2>/dev/null || printf 'unreadable %s\n' "$$-$(date +%s%N)"
  } | sha256sum | cut -c1-32
}

# Is repo:tag (a build key tag) already in the registry? Prints its digest if so.
mmerep_earlier_build() {
  case "${MMEREP_REBUILD:-changed}" in
    always) mmerep_log "MMEREP_REBUILD=always: building"; return 1 ;;
  esac
  if [ "${CI_PIPELINE_SOURCE:-}" = schedule ]; then
    mmerep_log "scheduled pipeline: building, so base image updates are picked up"
    return 1
  fi
  if ! command -v skopeo >/dev/null; then
    mmerep_log "no skopeo in the builder image: cannot look for an identical earlier build, building"
    return 1
  fi
  mmerep_remote_digest "$1" && { printf '%s' "$mmerep_digest"; return 0; }
  [ $? -eq 1 ] || mmerep_log "cannot look for an identical earlier build ($mmerep_error): building"
  return 1
}

# build.env for one image.
mmerep_write_digest() {
  prefix=$(mmerep_var_prefix "$1")
  printf '%s_DIGEST=%s\n%s_IMAGE=%s@%s\n' "$prefix" "$3" "$prefix" "$2" "$3" >"${MMEREP_DOTENV:-build.env}"
}

mmerep_build() {
  kind=$1
  embedded_context=""
  repo=$(mmerep_repository "$kind") || exit 1
  case "${MMEREP_REBUILD:-changed}" in
    changed | always) ;;
    *) mmerep_die "MMEREP_REBUILD is '${MMEREP_REBUILD}': use changed or always (input rebuild)" ;;
  esac
  case "${MMEREP_LAYER_CACHE:-local}" in
    local | registry) ;;
    *) mmerep_die "MMEREP_LAYER_CACHE is '${MMEREP_LAYER_CACHE}': use local or registry (input layer_cache)" ;;
  esac
  digestfile="${TMPDIR:-/tmp}/mmerep-digest-$kind-${CI_JOB_ID:-local}"
  if [ "$kind" = processor ]; then
    context=${MMEREP_CONTEXT:-.}
    file=${MMEREP_DOCKERFILE:-Dockerfile}
    [ -f "$file" ] || mmerep_die "no Dockerfile at $file (input dockerfile, relative to the repository root)"
    set --
  else
    [ -n "${PROCESSOR_DIGEST:-}" ] \
      || mmerep_die "PROCESSOR_DIGEST is not set: the $kind job needs the processor build job's dotenv report"
    base="$(mmerep_repository processor)@$PROCESSOR_DIGEST" || exit 1
    if [ -n "${MMEREP_FLAVOUR_DIR:-}" ]; then
      context="$MMEREP_FLAVOUR_DIR/$kind"
      file="$context/Containerfile"
      [ -f "$file" ] || mmerep_die "no $file (MMEREP_FLAVOUR_DIR must hold <flavour>/Containerfile)"
    else
      context=$(mktemp -d "${TMPDIR:-/tmp}/mmerep-$kind.XXXXXX")
      embedded_context=$context
      file="$context/Containerfile"
      mmerep_containerfile "$kind" >"$file" || mmerep_die "no Containerfile for flavour $kind"
    fi
    mmerep_log "building $kind FROM $base"
    set -- --build-arg "PROCESSOR_IMAGE=$base"
  fi
  for arg in ${MMEREP_BUILD_ARGS:-}; do
    set -- "$@" --build-arg "$arg"
  done
  set -- "$@" --label "org.opencontainers.image.revision=${CI_COMMIT_SHA:-unknown}"
  if [ -n "${CI_PROJECT_URL:-}" ]; then
    set -- "$@" --label "org.opencontainers.image.source=$CI_PROJECT_URL"
  fi
  tls=$(mmerep_tls_verify)
  key=""
  if [ "${MMEREP_ENGINE:-buildah}" = buildah ]; then key=$(mmerep_build_key "$file" "$context" "$@"); fi
  if [ -n "$key" ]; then
    tag="build-$key"
    if digest=$(mmerep_earlier_build "$repo:$tag"); then
      if [ -n "${embedded_context:-}" ]; then rm -rf "$embedded_context"; fi
      mmerep_write_digest "$kind" "$repo" "$digest"
      mmerep_log "unchanged: $repo:$tag was built from the same Containerfile, context and arguments; reusing $repo@$digest"
      return 0
    fi
  else
    tag=$(mmerep_candidate_tag)
  fi
  case "${MMEREP_ENGINE:-buildah}" in
    buildah)
      command -v buildah >/dev/null || mmerep_die "buildah is not installed in this job's image (input builder_image)"
      if [ "${MMEREP_LAYER_CACHE:-local}" = registry ]; then
        # Layers cached in the registry (REGISTRY/PROJECT/buildcache/<kind>/NAME): a
        # runner with an empty store still reuses them.
        cache=$(mmerep_repository "buildcache/$kind")
        set -- "$@" --cache-from "$cache" --cache-to "$cache"
        mmerep_log "layer cache: $cache"
      fi
      mmerep_log "buildah build -f $file $context -> $repo:$tag"
      mmerep_buildah build --layers --isolation "${MMEREP_ISOLATION:-chroot}" --tls-verify="$tls" \
        -f "$file" -t "$repo:$tag" "$@" "$context" || mmerep_die "buildah build failed for $kind"
      mmerep_buildah push --tls-verify="$tls" --digestfile "$digestfile" "$repo:$tag" "docker://$repo:$tag" \
        || mmerep_die "pushing $repo:$tag failed"
      ;;
    kaniko)
      # Kaniko is archived upstream; kept for runners that cannot run buildah.
      [ -x /kaniko/executor ] || mmerep_die "engine kaniko needs a kaniko image (input builder_image, e.g. its :debug variant)"
      if [ -n "${REGISTRY_AUTH_FILE:-}" ]; then
        mkdir -p /kaniko/.docker && cp "$REGISTRY_AUTH_FILE" /kaniko/.docker/config.json
      fi
      if [ "$tls" = false ]; then set -- "$@" --insecure --insecure-pull --skip-tls-verify --skip-tls-verify-pull; fi
      /kaniko/executor --context "dir://$(cd "$context" && pwd)" --dockerfile "$file" \
        --destination "$repo:$tag" --digest-file "$digestfile" --cache=true "$@" \
        || mmerep_die "kaniko build failed for $kind"
      ;;
    *) mmerep_die "unknown engine '${MMEREP_ENGINE}': use buildah or kaniko" ;;
  esac
  digest=$(cat "$digestfile")
  rm -f "$digestfile"
  if [ -n "${embedded_context:-}" ]; then rm -rf "$embedded_context"; fi
  case "$digest" in
    sha256:*) ;;
    *) mmerep_die "the push of $kind gave no digest (got '$digest')" ;;
  esac
  mmerep_write_digest "$kind" "$repo" "$digest"
  mmerep_log "pushed $repo@$digest (candidate tag $tag)"
}
