package kubernetes

import (
	"fmt"
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Keys of a context's Secret.
const (
	secretToken  = "token"
	secretRecord = "record"
)

// contextUID is the uid and gid every process of a context runs as
// (contexts.ContextUser).
const contextUID = 61000

func (r *Runtime) meta(contextID string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: podName(contextID), Namespace: r.cfg.Namespace, Labels: maps.Clone(labels)}
}

// secret holds the token of the pod's server, which the pod reads as
// JUPYTER_TOKEN, and, once the Manager saves it, the context's record.
func (r *Runtime) secret(spec contexts.Spec, labels map[string]string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: r.meta(spec.ContextID, labels),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{secretToken: []byte(spec.Token)},
	}
}

// policy shuts the context's pod in: connections in only from the daemon,
// to the server's port; out only to egress, which nil leaves empty.
func (r *Runtime) policy(contextID string, labels map[string]string, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	var from []networkingv1.NetworkPolicyPeer
	if len(r.cfg.DaemonSelector) > 0 {
		from = append(from, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: r.cfg.DaemonSelector}})
	}
	for _, cidr := range r.cfg.DaemonCIDRs {
		from = append(from, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}})
	}
	port := intstr.FromInt32(jupyterPort)
	tcp := corev1.ProtocolTCP
	var ingress []networkingv1.NetworkPolicyIngressRule
	if len(from) > 0 {
		ingress = []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}}}}
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: r.meta(contextID, labels),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelOwner: r.cfg.Owner, labelContextID: contextID}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     ingress,
			Egress:      egress,
		},
	}
}

// pod is the context's pod, as locked down as a pod can be: a uid of its
// own, nothing to gain privileges with, a read-only root, no token of the
// cluster's and no list of its services, bounded resources, and a
// deadline after which the cluster ends it whatever the daemon does.
func (r *Runtime) pod(spec contexts.Spec, labels map[string]string) *corev1.Pod {
	l := r.cfg.Limits
	no, yes := false, true
	uid := int64(contextUID)
	grace := int64(1)
	limits := corev1.ResourceList{}
	if l.Memory > 0 {
		limits[corev1.ResourceMemory] = *resource.NewQuantity(l.Memory, resource.BinarySI)
	}
	if l.CPUs > 0 {
		limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(l.CPUs*1000), resource.DecimalSI)
	}
	if l.WorkspaceSize > 0 {
		// The workspace and what the container writes besides, logs
		// included.
		limits[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(l.WorkspaceSize+64<<20, resource.BinarySI)
	}
	// Requests are small, so that idle contexts do not hold a node's
	// capacity: they mostly wait for code.
	requests := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("64Mi"),
	}
	tmp := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
	if l.TmpSize > 0 {
		tmp.SizeLimit = resource.NewQuantity(l.TmpSize, resource.BinarySI)
	}
	workspace := &corev1.EmptyDirVolumeSource{}
	if l.WorkspaceSize > 0 {
		workspace.SizeLimit = resource.NewQuantity(l.WorkspaceSize, resource.BinarySI)
	}
	var deadline *int64
	if r.cfg.ActiveDeadline > 0 {
		d := int64(r.cfg.ActiveDeadline.Seconds())
		deadline = &d
	}
	var runtimeClass *string
	if r.cfg.RuntimeClass != "" {
		runtimeClass = &r.cfg.RuntimeClass
	}
	return &corev1.Pod{
		ObjectMeta: r.meta(spec.ContextID, labels),
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			ActiveDeadlineSeconds:         deadline,
			RuntimeClassName:              runtimeClass,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:      &uid,
				RunAsGroup:     &uid,
				RunAsNonRoot:   &yes,
				FSGroup:        &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "context",
				Image:           spec.Image,
				ImagePullPolicy: r.cfg.PullPolicy,
				Command:         spec.Cmd, // nil keeps the image's
				Env: []corev1.EnvVar{
					{Name: "JUPYTER_PORT", Value: strconv.Itoa(jupyterPort)},
					{Name: "JUPYTER_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: podName(spec.ContextID)}, Key: secretToken}}},
				},
				Ports: []corev1.ContainerPort{{Name: "jupyter", ContainerPort: jupyterPort, Protocol: corev1.ProtocolTCP}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					ReadOnlyRootFilesystem:   &yes,
					RunAsNonRoot:             &yes,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				Resources: corev1.ResourceRequirements{Limits: limits, Requests: requests},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "tmp", MountPath: "/tmp"},
					{Name: "workspace", MountPath: contexts.DefaultWorkingDir},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: tmp}},
				{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: workspace}},
			},
		},
	}
}

// fatalWaits are the reasons a container waits that no wait mends. Not
// CreateContainerConfigError nor CreateContainerError, which the kubelet
// retries: a new pod's Secret may not be in its cache yet.
var fatalWaits = map[string]bool{
	"ErrImageNeverPull": true,
	"ImagePullBackOff":  true,
	"InvalidImageName":  true,
	"RunContainerError": true,
}

// podEnded says whether the pod's server has ended or never will start,
// and how.
func podEnded(p *corev1.Pod) (string, bool) {
	if p.DeletionTimestamp != nil {
		return "the pod is being deleted", true
	}
	for _, c := range p.Status.ContainerStatuses {
		if t := c.State.Terminated; t != nil {
			return fmt.Sprintf("exited with code %d (%s)", t.ExitCode, t.Reason), true
		}
		if w := c.State.Waiting; w != nil && fatalWaits[w.Reason] {
			return fmt.Sprintf("cannot start: %s: %s", w.Reason, w.Message), true
		}
	}
	switch p.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return fmt.Sprintf("the pod %s: %s %s", p.Status.Phase, p.Status.Reason, p.Status.Message), true
	}
	return "", false
}
