package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// prepare computes the process's arguments and environment: the image's
// defaults, the container's command/args/env/envFrom with $(VAR)
// expansion, the downward API, and volume paths.
func (c *container) prepare(image Image) (argv, env []string, err error) {
	r := c.runner
	pod := r.latest()
	ctx, cancel := context.WithTimeout(r.agent.ctx, 10*time.Second)
	defer cancel()

	mounts, err := c.materializeVolumes(ctx, pod)
	if err != nil {
		return nil, nil, err
	}
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	vars := map[string]string{}
	var order []string
	put := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	// What a container runtime gives every container.
	put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	put("HOSTNAME", hostname)
	keys := make([]string, 0, len(image.Env))
	for k := range image.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		put(k, image.Env[k])
	}
	// The container's own variables, which $(VAR) may reference.
	own := map[string]string{}
	for _, from := range c.spec.EnvFrom {
		data, err := r.envSource(ctx, from)
		if err != nil {
			return nil, nil, err
		}
		dk := make([]string, 0, len(data))
		for k := range data {
			dk = append(dk, k)
		}
		sort.Strings(dk)
		for _, k := range dk {
			put(from.Prefix+k, data[k])
			own[from.Prefix+k] = data[k]
		}
	}
	for _, e := range c.spec.Env {
		v := expand(e.Value, own)
		if e.ValueFrom != nil {
			var skip bool
			v, skip, err = r.envValueFrom(ctx, pod, c, e.ValueFrom)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			if skip {
				continue
			}
		}
		v = rewritePath(v, mounts)
		put(e.Name, v)
		own[e.Name] = v
	}
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	command := make([]string, len(c.spec.Command))
	for i, s := range c.spec.Command {
		command[i] = rewritePath(expand(s, own), mounts)
	}
	args := make([]string, len(c.spec.Args))
	for i, s := range c.spec.Args {
		args[i] = rewritePath(expand(s, own), mounts)
	}
	argv, err = image.commandLine(command, args)
	return argv, env, err
}

// expand replaces $(VAR) with the container variable VAR; $$ escapes and
// unknown references stay as written, as Kubernetes does.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func (r *podRunner) envValueFrom(ctx context.Context, pod *corev1.Pod, c *container, from *corev1.EnvVarSource) (value string, skip bool, err error) {
	switch {
	case from.FieldRef != nil:
		v, err := r.fieldValue(pod, from.FieldRef.FieldPath)
		return v, false, err
	case from.ResourceFieldRef != nil:
		q, ok := c.spec.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(from.ResourceFieldRef.Resource, "limits."))]
		if strings.HasPrefix(from.ResourceFieldRef.Resource, "requests.") {
			q, ok = c.spec.Resources.Requests[corev1.ResourceName(strings.TrimPrefix(from.ResourceFieldRef.Resource, "requests."))]
		}
		if !ok {
			return "0", false, nil
		}
		return q.String(), false, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := r.agent.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := cm.Data[ref.Key]; ok {
				return v, false, nil
			}
			err = fmt.Errorf("key %q not in ConfigMap %s", ref.Key, ref.Name)
		}
		if ref.Optional != nil && *ref.Optional {
			return "", true, nil
		}
		return "", false, err
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := r.agent.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := s.Data[ref.Key]; ok {
				return string(v), false, nil
			}
			err = fmt.Errorf("key %q not in Secret %s", ref.Key, ref.Name)
		}
		if ref.Optional != nil && *ref.Optional {
			return "", true, nil
		}
		return "", false, err
	}
	return "", true, nil
}

// fieldValue is the downward API.
func (r *podRunner) fieldValue(pod *corev1.Pod, path string) (string, error) {
	r.mu.Lock()
	podIP := ""
	if r.netReady {
		podIP = r.net.IP.String()
	}
	r.mu.Unlock()
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return r.node.host.Gateway().String(), nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			return m[path[len(prefix)+2:len(path)-2]], nil
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

func (r *podRunner) envSource(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		cm, err := r.agent.client.CoreV1().ConfigMaps(r.ns).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
				return nil, nil
			}
			return nil, err
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		s, err := r.agent.client.CoreV1().Secrets(r.ns).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if err != nil {
			if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
				return nil, nil
			}
			return nil, err
		}
		out := map[string]string{}
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, nil
}

// mount is a volume mount's path in the container and where its files
// really are: pods share the host's filesystem, so a mountPath cannot be
// mounted; environment values and arguments naming it are rewritten.
type mount struct{ path, dir string }

// materializeVolumes writes the container's secret, configMap and
// emptyDir volumes into the pod's directory.
func (c *container) materializeVolumes(ctx context.Context, pod *corev1.Pod) ([]mount, error) {
	r := c.runner
	var mounts []mount
	for _, vm := range c.spec.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == vm.Name {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("volume mount %q names no volume", vm.Name)
		}
		dir := r.agent.podPath(string(r.uid), "volumes", vm.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		var items []corev1.KeyToPath
		switch {
		case vol.Secret != nil:
			s, err := r.agent.client.CoreV1().Secrets(pod.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				if vol.Secret.Optional != nil && *vol.Secret.Optional {
					break
				}
				return nil, fmt.Errorf("volume %s: %w", vm.Name, err)
			}
			files, items = s.Data, vol.Secret.Items
		case vol.ConfigMap != nil:
			cm, err := r.agent.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, vol.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if vol.ConfigMap.Optional != nil && *vol.ConfigMap.Optional {
					break
				}
				return nil, fmt.Errorf("volume %s: %w", vm.Name, err)
			}
			for k, v := range cm.Data {
				files[k] = []byte(v)
			}
			for k, v := range cm.BinaryData {
				files[k] = v
			}
			items = vol.ConfigMap.Items
		case vol.EmptyDir != nil:
		case vol.Projected != nil:
			// The service account token volume admission adds to every
			// pod: nothing here reads it.
			r.log.Debug("projected volume left empty", "volume", vm.Name)
		default:
			r.log.Warn("volume type not supported; an empty directory stands in", "volume", vm.Name)
		}
		write := func(name string, data []byte) error {
			p := filepath.Join(dir, filepath.Clean("/"+name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			return os.WriteFile(p, data, 0o644)
		}
		if len(items) > 0 {
			for _, it := range items {
				if err := write(it.Path, files[it.Key]); err != nil {
					return nil, err
				}
			}
		} else {
			for k, v := range files {
				if err := write(k, v); err != nil {
					return nil, err
				}
			}
		}
		if vm.SubPath != "" {
			dir = filepath.Join(dir, filepath.Clean("/"+vm.SubPath))
		}
		mounts = append(mounts, mount{path: filepath.Clean(vm.MountPath), dir: dir})
	}
	// Longest mount path first, so nested mounts win.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].path) > len(mounts[j].path) })
	return mounts, nil
}

func rewritePath(s string, mounts []mount) string {
	for _, m := range mounts {
		if s == m.path || strings.HasPrefix(s, m.path+"/") {
			return m.dir + s[len(m.path):]
		}
	}
	return s
}

// runHook runs a lifecycle hook: exec (sleep natively, other commands in
// the pod's netns if they exist on the host), httpGet, or sleep.
func (c *container) runHook(ctx context.Context, h *corev1.LifecycleHandler) error {
	r := c.runner
	sleep := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("hook cut short by the grace period: %w", ctx.Err())
		}
	}
	switch {
	case h.Sleep != nil:
		return sleep(time.Duration(h.Sleep.Seconds) * time.Second)
	case h.Exec != nil:
		if d, ok := sleepCommand(h.Exec.Command); ok {
			return sleep(d)
		}
		out, err := r.execInPod(ctx, h.Exec.Command)
		if err != nil {
			return fmt.Errorf("exec %q: %w: %s", h.Exec.Command, err, strings.TrimSpace(string(out)))
		}
		return nil
	case h.HTTPGet != nil:
		r.mu.Lock()
		ip := r.net.IP
		r.mu.Unlock()
		return c.httpGet(ctx, h.HTTPGet, ip, true)
	case h.TCPSocket != nil:
		return fmt.Errorf("tcpSocket hooks are deprecated and not run")
	}
	return nil
}

// sleepCommand recognises `sleep N` (also via `sh -c "sleep N"`), which
// the agent runs itself: images' sleep binaries do not exist here.
func sleepCommand(argv []string) (time.Duration, bool) {
	if len(argv) == 3 && (filepath.Base(argv[0]) == "sh" || filepath.Base(argv[0]) == "bash") && argv[1] == "-c" {
		argv = strings.Fields(argv[2])
	}
	if len(argv) != 2 || filepath.Base(argv[0]) != "sleep" {
		return 0, false
	}
	s := argv[1]
	if d, err := time.ParseDuration(s); err == nil {
		return d, true
	}
	if d, err := time.ParseDuration(s + "s"); err == nil {
		return d, true
	}
	return 0, false
}
