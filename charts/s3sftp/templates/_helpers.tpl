{{/* Chart name, overridable. */}}
{{- define "s3sftp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name used for every object; "files" + "s3sftp" gives "files-s3sftp". */}}
{{- define "s3sftp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "s3sftp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "s3sftp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the pods; never change them (Deployment selectors are immutable). */}}
{{- define "s3sftp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "s3sftp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "s3sftp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "s3sftp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "s3sftp.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "s3sftp.hostKeysSecretName" -}}
{{- .Values.hostKeys.existingSecret | default (printf "%s-host-keys" (include "s3sftp.fullname" .)) -}}
{{- end -}}

{{/*
The host key files, as a JSON list for the server's hostKeys. The Secret is mounted in
/etc/s3sftp-host-keys. The generated Secret (hostkeys-secret.yaml) holds these two entries.
*/}}
{{- define "s3sftp.hostKeyPaths" -}}
{{- $files := .Values.hostKeys.existingSecretKeys -}}
{{- if not .Values.hostKeys.existingSecret -}}
{{- $files = list "ssh_host_ecdsa_key" "ssh_host_rsa_key" -}}
{{- end -}}
{{- $paths := list -}}
{{- range $files -}}
{{- $paths = append $paths (printf "/etc/s3sftp-host-keys/%s" .) -}}
{{- end -}}
{{- toJson $paths -}}
{{- end -}}

{{/*
The namespace whose SftpUser resources are served, as the server's users.kubernetes.namespace:
"" means every namespace (only with rbac.watchAllNamespaces); otherwise the configured namespace or
the release namespace.
*/}}
{{- define "s3sftp.watchNamespace" -}}
{{- if .Values.rbac.watchAllNamespaces -}}
{{- if .Values.config.users.kubernetes.namespace -}}
{{- fail "set either rbac.watchAllNamespaces or config.users.kubernetes.namespace, not both" -}}
{{- end -}}
{{- else -}}
{{- .Values.config.users.kubernetes.namespace | default .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
config.shutdownGracePeriod in whole seconds, rounded up. Accepts what the server accepts: whole
seconds (30) or number+unit pairs (250ms, 30s, 5m, 1h, 1m30s).
*/}}
{{- define "s3sftp.shutdownGraceSeconds" -}}
{{- include "s3sftp.durationSeconds" .Values.config.shutdownGracePeriod -}}
{{- end -}}

{{/* A duration as the server accepts it (30, 250ms, 1m30s), in whole seconds rounded up. */}}
{{- define "s3sftp.durationSeconds" -}}
{{- $text := toString . | lower | trim -}}
{{- if regexMatch "^[0-9]+$" $text -}}
{{- $text -}}
{{- else -}}
{{- $ms := 0.0 -}}
{{- $factors := dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 -}}
{{- range regexFindAll "[0-9.]+(ms|s|m|h)" $text -1 -}}
{{- $unit := regexFind "(ms|s|m|h)$" . -}}
{{- $number := trimSuffix $unit . | float64 -}}
{{- $ms = addf $ms (mulf $number (get $factors $unit)) -}}
{{- end -}}
{{- divf $ms 1000 | ceil | int -}}
{{- end -}}
{{- end -}}

{{/*
Kubernetes kills the container terminationGracePeriodSeconds after it starts stopping the pod; the
preStop sleep and the server's drain both run inside that time, so it must exceed their sum.
*/}}
{{- define "s3sftp.terminationGracePeriodSeconds" -}}
{{- $drain := add (include "s3sftp.shutdownGraceSeconds" . | int) (.Values.preStopSleepSeconds | int) (include "s3sftp.durationSeconds" .Values.config.shutdownDelay | int) -}}
{{- if eq (.Values.terminationGracePeriodSeconds | int) 0 -}}
{{- add $drain 10 -}}
{{- else if le (.Values.terminationGracePeriodSeconds | int) $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be more than preStopSleepSeconds + config.shutdownDelay + config.shutdownGracePeriod (%d seconds), or uploads still finishing are killed; set it to 0 to compute it" (.Values.terminationGracePeriodSeconds | int) $drain) -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{/* PromQL label matchers for the series scraped from this release's metrics Service. */}}
{{- define "s3sftp.metricsSelector" -}}
namespace="{{ .Release.Namespace }}", service="{{ include "s3sftp.fullname" . }}-metrics"
{{- end -}}

{{/*
The SSH Service's annotations: service.annotations, plus, for a LoadBalancer, what the chart derives
for the AWS Load Balancer Controller: PROXY protocol v2 at the NLB exactly when the server trusts
PROXY headers (config.proxyProtocol.trustedCIDRs), so the two never disagree, and the target
group's deregistration delay merged into a target-group-attributes annotation the user may also set.
*/}}
{{- define "s3sftp.serviceAnnotations" -}}
{{- $out := deepCopy (.Values.service.annotations | default dict) -}}
{{- if eq .Values.service.type "LoadBalancer" -}}
{{- if .Values.config.proxyProtocol.trustedCIDRs -}}
{{- $_ := set $out "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol" "*" -}}
{{- end -}}
{{- $key := "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes" -}}
{{- $attrs := list -}}
{{- with index $out $key }}{{ $attrs = append $attrs . }}{{ end -}}
{{- if gt (int .Values.service.deregistrationDelaySeconds) 0 -}}
{{- $attrs = append $attrs (printf "deregistration_delay.timeout_seconds=%d" (int .Values.service.deregistrationDelaySeconds)) -}}
{{- end -}}
{{- with $attrs }}{{ $_ := set $out $key (join "," .) }}{{ end -}}
{{- end -}}
{{- if $out }}{{ toYaml $out }}{{ end -}}
{{- end -}}
