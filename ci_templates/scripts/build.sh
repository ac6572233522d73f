# mme-rep CI: build one image (the processor, or a flavour FROM the processor pinned by
# digest), push it under the pipeline's candidate tag, and write its digest to build.env.
#   mmerep_build processor | htcondor-batch | interactive | jupyter

# buildah with the storage settings of this job (vfs by default: no fuse, no privileges).
mmerep_buildah() {
  if [ -n "${MMEREP_BUILDAH_RUNROOT:-}" ]; then set -- --runroot "$MMEREP_BUILDAH_RUNROOT" "$@"; fi
  if [ -n "${MMEREP_BUILDAH_ROOT:-}" ]; then set -- --root "$MMEREP_BUILDAH_ROOT" "$@"; fi
  buildah --storage-driver "${MMEREP_STORAGE_DRIVER:-vfs}" "$@"
}

# The candidate tag: unique per pipeline, so re-runs never move a published tag. The
# publish job gives the scanned digest its immutable tags.
mmerep_candidate_tag() { printf 'ci-%s' "${CI_PIPELINE_ID:-local}"; }

mmerep_build() {
  kind=$1
  embedded_context=""
  repo=$(mmerep_repository "$kind") || exit 1
  tag=$(mmerep_candidate_tag)
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
  case "${MMEREP_ENGINE:-buildah}" in
    buildah)
      command -v buildah >/dev/null || mmerep_die "buildah is not installed in this job's image (input builder_image)"
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
  prefix=$(mmerep_var_prefix "$kind")
  printf '%s_DIGEST=%s\n%s_IMAGE=%s@%s\n' "$prefix" "$digest" "$prefix" "$repo" "$digest" >"${MMEREP_DOTENV:-build.env}"
  mmerep_log "pushed $repo@$digest (candidate tag $tag)"
}
