{{/* The release's object name prefix. */}}
{{- define "egressguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "egressguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "egressguard.dnsguardName" -}}
{{- printf "%s-dnsguard" (include "egressguard.fullname" .) -}}
{{- end -}}

{{- define "egressguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "egressguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: egressguard
{{- end -}}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "control-plane"). */}}
{{- define "egressguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egressguard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "egressguard.componentLabels" -}}
{{ include "egressguard.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The egressguard image, pinned by digest when one is set, else by tag. */}}
{{- define "egressguard.image" -}}
{{- if .Values.image.digest -}}
{{- if not (hasPrefix "sha256:" .Values.image.digest) -}}
{{- fail "image.digest must start with sha256:" -}}
{{- end -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag: latest is not a pinned version; use a release tag or image.digest" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "egressguard.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "egressguard.fullname" .) -}}
{{- end -}}

{{/* "true" when the webhook certificate comes from cert-manager. */}}
{{- define "egressguard.useCertManager" -}}
{{- $cm := toString .Values.webhook.certificate.certManager -}}
{{- if eq $cm "true" -}}true
{{- else if eq $cm "auto" -}}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1" -}}true{{- end -}}
{{- else if ne $cm "false" -}}
{{- fail (printf "webhook.certificate.certManager: %q is not auto, true or false" $cm) -}}
{{- end -}}
{{- end -}}

{{/* The control plane Service's DNS name, the xDS address of the sidecars. */}}
{{- define "egressguard.xdsAddress" -}}
{{- printf "%s.%s.svc:%d" (include "egressguard.fullname" .) .Release.Namespace (int .Values.ports.xds) -}}
{{- end -}}

{{- define "egressguard.listen" -}}
{{- $host := .ctx.Values.listenHost -}}
{{- if contains ":" $host -}}
{{- printf "[%s]:%d" $host (int .port) -}}
{{- else -}}
{{- printf "%s:%d" $host (int .port) -}}
{{- end -}}
{{- end -}}

{{/* The catalog file names in load order: the operator's files sorted, then
     the chart's environments file (last, so that mode always applies). */}}
{{- define "egressguard.catalogPaths" -}}
{{- $paths := list -}}
{{- range $name := keys .Values.catalog.files | sortAlpha -}}
{{- $paths = append $paths (printf "/etc/egressguard/catalog/%s" $name) -}}
{{- end -}}
{{- $paths = append $paths "/etc/egressguard/catalog/zz-egressguard-environments.yaml" -}}
{{- toJson $paths -}}
{{- end -}}

{{/* The serve config sections both roles share. */}}
{{- define "egressguard.commonConfig" -}}
policy:
  catalogs: {{ include "egressguard.catalogPaths" . }}
  dir: /etc/egressguard/policy
  replace_default: {{ .Values.policy.replaceDefault }}
log:
  level: {{ .Values.log.level | quote }}
  format: {{ .Values.log.format | quote }}
admin:
  listen: {{ include "egressguard.listen" (dict "ctx" . "port" .Values.ports.admin) | quote }}
  {{- if .Values.adminAuth.kubernetes }}
  # The JSON APIs and the page: a bearer token checked with TokenReview,
  # its user allowed "get adminapi.egressguard.io" by SubjectAccessReview
  # (bind the <release>-admin-reader ClusterRole to who may read them).
  auth:
    kubernetes: true
  {{- end }}
{{- end -}}

{{/* Volumes both roles mount: config, catalog, policy, and a /tmp. */}}
{{- define "egressguard.volumeMounts" -}}
- name: config
  mountPath: /etc/egressguard/config
  readOnly: true
- name: catalog
  mountPath: /etc/egressguard/catalog
  readOnly: true
- name: policy
  mountPath: /etc/egressguard/policy
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "egressguard.volumes" -}}
- name: config
  configMap:
    name: {{ include "egressguard.fullname" . }}-config
- name: catalog
  configMap:
    name: {{ include "egressguard.fullname" . }}-catalog
- name: policy
  configMap:
    name: {{ include "egressguard.fullname" . }}-policy
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* Checks of values that the API server would not catch or would catch late. */}}
{{- define "egressguard.validate" -}}
{{- if not (has .Values.mode (list "report" "enforce")) -}}
{{- fail (printf "mode: %q is not report or enforce" .Values.mode) -}}
{{- end -}}
{{- if not (has .Values.webhook.failurePolicy (list "Fail" "Ignore")) -}}
{{- fail (printf "webhook.failurePolicy: %q is not Fail or Ignore" .Values.webhook.failurePolicy) -}}
{{- end -}}
{{- if and .Values.dnsguard.service.clusterIP (not (regexMatch "^([0-9]{1,3}\\.){3}[0-9]{1,3}$|^[0-9a-fA-F:]+:[0-9a-fA-F:]*$" (toString .Values.dnsguard.service.clusterIP))) -}}
{{- fail (printf "dnsguard.service.clusterIP: %q is not an IP address (leave it empty to let the API server allocate one, or set a free address in the Service CIDR: it is the nameserver of every injected pod)" (toString .Values.dnsguard.service.clusterIP)) -}}
{{- end -}}
{{- range $name, $body := .Values.catalog.files -}}
{{- if not (hasSuffix ".yaml" $name) -}}
{{- fail (printf "catalog.files.%s: the name must end in .yaml" $name) -}}
{{- end -}}
{{- if regexMatch "(?m)^environments\\s*:" $body -}}
{{- fail (printf "catalog.files.%s sets environments: set them with the chart's environments and mode values instead (the chart's file is loaded last and would replace them)" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $body := .Values.policy.files -}}
{{- if not (hasSuffix ".rego" $name) -}}
{{- fail (printf "policy.files.%s: the name must end in .rego" $name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.policy.replaceDefault (empty .Values.policy.files) -}}
{{- fail "policy.replaceDefault is true but policy.files is empty: there would be no policy" -}}
{{- end -}}
{{- end -}}

{{/* A CA and a serving certificate for the control-plane Service's DNS
     names, generated by Helm when cert-manager is not used, as YAML {crt,
     key, caBundle} (base64): the webhook's and the xDS server's, each in its
     own Secret. Pass (dict "ctx" $ "secret" NAME "ca" CA-NAME "days" N). An
     existing Secret is read back with lookup and kept, so upgrades do not
     rotate a CA under running pods. lookup returns nothing under `helm
     template`, --dry-run and offline renderers (Argo CD, Flux's helm
     template): there a new CA is generated on every render, and the
     webhook configuration, the Secrets and every newly injected bootstrap
     change on every sync; use cert-manager with those. Delete the Secret
     and upgrade to rotate. */}}
{{- define "egressguard.selfSignedTLS" -}}
{{- $ := .ctx -}}
{{- $existing := lookup "v1" "Secret" $.Release.Namespace .secret -}}
{{- if and $existing $existing.data (index $existing.data "tls.crt") (index $existing.data "tls.key") (index $existing.data "ca.crt") -}}
crt: {{ index $existing.data "tls.crt" }}
key: {{ index $existing.data "tls.key" }}
caBundle: {{ index $existing.data "ca.crt" }}
{{- else -}}
{{- $svc := include "egressguard.fullname" $ -}}
{{- $days := int .days -}}
{{- $ca := genCA .ca $days -}}
{{- $dns := list (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.%s" $svc $.Release.Namespace $.Values.clusterDomain) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $.Release.Namespace) nil $dns $days $ca -}}
crt: {{ $cert.Cert | b64enc }}
key: {{ $cert.Key | b64enc }}
caBundle: {{ $ca.Cert | b64enc }}
{{- end -}}
{{- end -}}

{{- define "egressguard.xdsSecretName" -}}
{{- printf "%s-xds-tls" (include "egressguard.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the staging CA's key (tls.key). */}}
{{- define "egressguard.stagingCASecretName" -}}
{{- .Values.stagingCA.existingSecret | default (printf "%s-staging-ca" (include "egressguard.fullname" .)) -}}
{{- end -}}

{{/* The staging CA's key, base64: the existing Secret's (lookup), else a
     new RSA key. Same caveat as selfSignedTLS for offline renderers, worse:
     a new key is a new CA, which every injected pod must be restarted to
     trust; set stagingCA.existingSecret there. */}}
{{- define "egressguard.stagingCAKey" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "egressguard.stagingCASecretName" .) -}}
{{- if and $existing $existing.data (index $existing.data "tls.key") -}}
{{- index $existing.data "tls.key" -}}
{{- else -}}
{{- genPrivateKey "rsa" | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
The dnsguard Service's ClusterIP as the control plane sees it: the fixed
value when one is set, else the Service's environment variable (Kubernetes
sets <SERVICE>_SERVICE_HOST in pods created after a Service of their
namespace; the chart creates the Service before the Deployment), expanded
by the kubelet in the container's arguments.
*/}}
{{- define "egressguard.dnsServer" -}}
{{- .Values.dnsguard.service.clusterIP | default (printf "$(%s_SERVICE_HOST)" (include "egressguard.dnsguardName" . | upper | replace "-" "_")) -}}
{{- end -}}
