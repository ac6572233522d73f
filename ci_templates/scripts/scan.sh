# mme-rep CI: scan every image this pipeline built with Trivy; fail on the chosen
# severity or worse (MMEREP_SEVERITY: LOW, MEDIUM, HIGH or CRITICAL).

mmerep_severities() {
  case "${MMEREP_SEVERITY:-CRITICAL}" in
    LOW) echo LOW,MEDIUM,HIGH,CRITICAL ;;
    MEDIUM) echo MEDIUM,HIGH,CRITICAL ;;
    HIGH) echo HIGH,CRITICAL ;;
    CRITICAL) echo CRITICAL ;;
    *) mmerep_die "unknown severity '$MMEREP_SEVERITY': use LOW, MEDIUM, HIGH or CRITICAL" ;;
  esac
}

mmerep_scan() {
  command -v trivy >/dev/null || mmerep_die "trivy is not installed in this job's image (input scanner_image)"
  severities=$(mmerep_severities) || exit 1
  set -- --no-progress --exit-code 1 --severity "$severities"
  if [ "$(mmerep_tls_verify)" = false ]; then set -- "$@" --insecure; fi
  for kind in processor $(mmerep_flavours); do
    digest=$(mmerep_digest_of "$kind")
    [ -n "$digest" ] || mmerep_die "no digest for $kind: did its build job run?"
    ref="$(mmerep_repository "$kind")@$digest" || exit 1
    mmerep_log "trivy image $ref (fails on $severities)"
    trivy image "$@" "$ref" || mmerep_die "$kind has vulnerabilities of severity $severities (or the scan failed)"
  done
}
