package workloads

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/nodeagent"
)

// GRPCImage is the image of GRPCApp's pods: the node agent runs the gRPC
// test pod (internal/testpods/grpcecho) for it, gRPC over h2c on 8080, its
// control endpoint on 15000.
const GRPCImage = nodeagent.GRPCEchoImage + ":latest"

// GRPCApp is a Deployment of the gRPC test pod behind a Service of the
// same name whose port "grpc" 80 (→ container port "grpc" 8080) says
// appProtocol kubernetes.io/h2c: what a user writes for a gRPC service.
// Readiness is the pod's gRPC health service, read through its control
// endpoint (GET /ready: the node agent has no gRPC probe); rolling with
// maxSurge 1 and maxUnavailable 0.
type GRPCApp struct {
	Namespace, Name string
	// Replicas defaults to 2.
	Replicas int32
	// PreStopSleep, when positive, gives the container a preStop sleep.
	PreStopSleep time.Duration
	// TLSSecret, when set, names a kubernetes.io/tls Secret the pods also
	// serve gRPC over TLS with (container port "grpcs" 8443), behind the
	// Service's second port "grpcs" 443 with appProtocol https.
	TLSSecret string
}

// App is the same Deployment for the helpers that only read its
// namespace, name and selector (AwaitRollout, RunningPods).
func (a GRPCApp) App() App { return App{Namespace: a.Namespace, Name: a.Name} }

// Deployment is GRPCApp's Deployment.
func (a GRPCApp) Deployment() *appsv1.Deployment {
	replicas := a.Replicas
	if replicas == 0 {
		replicas = 2
	}
	labels := a.App().labels()
	c := corev1.Container{
		Name:  "grpc",
		Image: GRPCImage,
		Ports: []corev1.ContainerPort{
			{Name: "grpc", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "control", ContainerPort: 15000, Protocol: corev1.ProtocolTCP},
		},
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("control")}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 1,
		},
	}
	var volumes []corev1.Volume
	if a.TLSSecret != "" {
		c.Args = []string{"-listen", ":8080", "-control", ":15000",
			"-tls-listen", ":8443", "-tls-cert", "/tls/tls.crt", "-tls-key", "/tls/tls.key"}
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "grpcs", ContainerPort: 8443, Protocol: corev1.ProtocolTCP})
		c.VolumeMounts = []corev1.VolumeMount{{Name: "tls", MountPath: "/tls", ReadOnly: true}}
		volumes = []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: a.TLSSecret}}}}
	}
	if a.PreStopSleep > 0 {
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: int64(max(1, a.PreStopSleep/time.Second))},
		}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(0))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, Volumes: volumes, TerminationGracePeriodSeconds: ptr(int64(30))},
			},
		},
	}
}

// Service is GRPCApp's Service.
func (a GRPCApp) Service() *corev1.Service {
	labels := a.App().labels()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.Name, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{
			Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc"), Protocol: corev1.ProtocolTCP,
			AppProtocol: ptr("kubernetes.io/h2c"),
		}}},
	}
	if a.TLSSecret != "" {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{
			Name: "grpcs", Port: 443, TargetPort: intstr.FromString("grpcs"), Protocol: corev1.ProtocolTCP,
			AppProtocol: ptr("https"),
		})
	}
	return s
}

// CreateGRPC makes GRPCApp's namespace (if missing), Deployment and
// Service.
func CreateGRPC(ctx context.Context, client kubernetes.Interface, a GRPCApp) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.Namespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", a.Namespace, err)
	}
	if _, err := client.AppsV1().Deployments(a.Namespace).Create(ctx, a.Deployment(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment %s/%s: %w", a.Namespace, a.Name, err)
	}
	if _, err := client.CoreV1().Services(a.Namespace).Create(ctx, a.Service(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service %s/%s: %w", a.Namespace, a.Name, err)
	}
	return nil
}
