# mme-rep CI: give each scanned digest its immutable tags ($CI_COMMIT_SHORT_SHA and, for
# a git tag, $CI_COMMIT_TAG) without rebuilding or re-pushing layers, and write all the
# digests to build.env (artifact and dotenv report) for later jobs and for operators.

# Tag repo@digest as repo:tag; a tag already on another digest is never moved.
mmerep_tag_digest() {
  t_repo=$1 t_digest=$2 t_tag=$3
  t_tls=$(mmerep_tls_verify)
  t_current=""
  if mmerep_remote_digest "$t_repo:$t_tag"; then
    t_current=$mmerep_digest
  elif [ $? -eq 2 ]; then
    mmerep_die "cannot check $t_repo:$t_tag: $mmerep_error"
  fi
  if [ "$t_current" = "$t_digest" ]; then
    mmerep_log "$t_repo:$t_tag is already $t_digest"
    return 0
  fi
  [ -z "$t_current" ] \
    || mmerep_die "$t_repo:$t_tag already points to $t_current; published tags are immutable (push a new commit or tag)"
  skopeo copy --all --preserve-digests --src-tls-verify="$t_tls" --dest-tls-verify="$t_tls" \
    "docker://$t_repo@$t_digest" "docker://$t_repo:$t_tag" >/dev/null \
    || mmerep_die "tagging $t_repo@$t_digest as $t_tag failed"
  mmerep_log "$t_repo:$t_tag -> $t_digest"
}

mmerep_publish() {
  command -v skopeo >/dev/null || mmerep_die "skopeo is not installed in this job's image (input publisher_image)"
  [ -n "${CI_COMMIT_SHORT_SHA:-}" ] || mmerep_die "CI_COMMIT_SHORT_SHA is not set (not running in GitLab CI?)"
  tags=$CI_COMMIT_SHORT_SHA
  if [ -n "${CI_COMMIT_TAG:-}" ]; then tags="$tags $CI_COMMIT_TAG"; fi
  env_file=${MMEREP_DOTENV:-build.env}
  : >"$env_file"
  for kind in processor $(mmerep_flavours); do
    digest=$(mmerep_digest_of "$kind")
    [ -n "$digest" ] || mmerep_die "no digest for $kind: did its build job run?"
    repo=$(mmerep_repository "$kind") || exit 1
    for tag in $tags; do
      mmerep_tag_digest "$repo" "$digest" "$tag"
    done
    prefix=$(mmerep_var_prefix "$kind")
    printf '%s_DIGEST=%s\n%s_IMAGE=%s@%s\n' "$prefix" "$digest" "$prefix" "$repo" "$digest" >>"$env_file"
  done
  printf 'MMEREP_TAGS=%s\n' "$tags" >>"$env_file"
  mmerep_log "published tags: $tags"
}
