{{/*
Names are fixed (labrun-*), as in config/default: the operator is a cluster singleton (one mesh lock, cluster-wide
admission policies that name its ServiceAccount), so a second release would fight the first anyway.
*/}}

{{/* The chart's standard labels, on every object it renders. */}}
{{- define "labrun-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* An image reference from repository, tag and digest: the digest wins over the tag. */}}
{{- define "labrun-operator.imageRef" -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end }}

{{/* The manager's image. */}}
{{- define "labrun-operator.image" -}}
{{ include "labrun-operator.imageRef" .Values.image }}
{{- end }}

{{/* The probe pods' image: probeImage, or the manager's image (it is also the prober) when no repository is set. */}}
{{- define "labrun-operator.probeImage" -}}
{{- if .Values.probeImage.repository -}}
{{ include "labrun-operator.imageRef" .Values.probeImage }}
{{- else -}}
{{ include "labrun-operator.image" . }}
{{- end -}}
{{- end }}

{{/* The images the admission policy lets the manager start probe pods with (comma-separated). */}}
{{- define "labrun-operator.probeImages" -}}
{{ join "," (prepend .Values.probeImage.extra (include "labrun-operator.probeImage" .)) }}
{{- end }}

{{/* The ztunnel pods' labels as a selector, key=value[,key=value] (keys sorted): --ztunnel-selector. */}}
{{- define "labrun-operator.ztunnelSelector" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.mesh.ztunnel.selector -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{ join "," $pairs }}
{{- end }}
