package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// config is what the command line says.
type config struct {
	listen          string
	control         string
	identity        identity
	shutdownTimeout time.Duration
	shutdownDelay   time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("testpod", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.listen, "listen", "", "IP:PORT the pod serves HTTP on (required)")
	fs.StringVar(&cfg.control, "control", "", "IP:PORT of the control endpoint (optional)")
	// The defaults come from the environment so that a pod run by the node
	// agent from a Deployment (no flags but the image's) reports who it is:
	// POD_NAME and POD_NAMESPACE from the downward API, else HOSTNAME, which
	// a container runtime sets to the pod name.
	fs.StringVar(&cfg.identity.Pod, "pod", firstEnv("POD_NAME", "HOSTNAME"), "pod name reported in every answer (default $POD_NAME, else $HOSTNAME)")
	fs.StringVar(&cfg.identity.Service, "service", firstEnv("SERVICE_NAME"), "service name reported in every answer (default $SERVICE_NAME)")
	fs.StringVar(&cfg.identity.Namespace, "namespace", firstEnv("POD_NAMESPACE", "NAMESPACE"), "namespace reported in every answer (default $POD_NAMESPACE, else $NAMESPACE)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second,
		"how long in-flight requests may take to finish after SIGTERM")
	fs.DurationVar(&cfg.shutdownDelay, "shutdown-delay", 0,
		"how long the pod keeps serving normally after SIGTERM before it shuts down (a preStop sleep)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if cfg.listen == "" {
		return cfg, errors.New("-listen is required")
	}
	if cfg.shutdownTimeout <= 0 {
		return cfg, errors.New("-shutdown-timeout must be positive")
	}
	if cfg.shutdownDelay < 0 {
		return cfg, errors.New("-shutdown-delay must not be negative")
	}
	return cfg, nil
}

// firstEnv returns the first non-empty of the named environment variables.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// run is main without os.Exit, returning the exit code.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "testpod:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With(
		"pod", cfg.identity.Pod, "service", cfg.identity.Service, "namespace", cfg.identity.Namespace)
	log.Info("starting", "pid", os.Getpid())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Both listeners are open before either serves, so whoever sees the
	// control endpoint answer knows the data port accepts connections too.
	dataListener, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.listen, "err", err)
		return 1
	}
	var controlListener net.Listener
	if cfg.control != "" {
		controlListener, err = net.Listen("tcp", cfg.control)
		if err != nil {
			dataListener.Close()
			log.Error("cannot listen for control", "addr", cfg.control, "err", err)
			return 1
		}
	}
	return serve(ctx, dataListener, controlListener, cfg, log)
}

// serve runs the pod on the given listeners (controlListener may be nil)
// until ctx is cancelled by the termination signal, then shuts down
// gracefully. It returns the process exit code.
func serve(ctx context.Context, dataListener, controlListener net.Listener, cfg config, log *slog.Logger) int {
	pod := newPodHandler(cfg.identity, log)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	dataServer := &http.Server{
		Handler:   pod,
		Protocols: protocols,
		// The handler decides everything about the answer, including
		// aborting it; the server's own error log would only add noise for
		// connections the tests break on purpose.
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	var controlServer *http.Server

	serveErrs := make(chan error, 2)
	go func() { serveErrs <- dataServer.Serve(dataListener) }()
	log.Info("listening", "addr", dataListener.Addr().String())
	if controlListener != nil {
		controlServer = &http.Server{Handler: pod.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErrs <- controlServer.Serve(controlListener) }()
		log.Info("control listening", "addr", controlListener.Addr().String())
	}

	select {
	case err := <-serveErrs:
		// Serve only returns early on a broken listener.
		log.Error("server failed", "err", err)
		dataServer.Close()
		if controlServer != nil {
			controlServer.Close()
		}
		return 1
	case <-ctx.Done():
	}

	if cfg.shutdownDelay > 0 {
		// What a preStop sleep gives a real pod: the endpoint change
		// reaches every router while the pod still serves.
		log.Info("termination signal received, serving on", "delay", cfg.shutdownDelay.String())
		select {
		case <-time.After(cfg.shutdownDelay):
		case err := <-serveErrs:
			log.Error("server failed", "err", err)
		}
	}
	log.Info("termination signal received, shutting down", "grace", cfg.shutdownTimeout.String())
	exitCode := 0
	graceCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := dataServer.Shutdown(graceCtx); err != nil {
		log.Warn("grace period expired, closing remaining connections", "err", err)
		pod.abandonRequests()
		dataServer.Close()
		exitCode = 1
	} else {
		log.Info("in-flight requests finished")
	}
	if controlServer != nil {
		// Control requests never block, so a short bound is plenty.
		controlCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := controlServer.Shutdown(controlCtx); err != nil {
			controlServer.Close()
		}
		cancel()
	}
	log.Info("exiting", "code", exitCode)
	return exitCode
}
