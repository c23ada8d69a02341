// Package testenv starts the real kube-apiserver and etcd that cortex's
// integration tests run against (controller-runtime's envtest), with the
// cortex CRDs installed and a kubeconfig for kubectl.
//
// The binaries come from $KUBEBUILDER_ASSETS (hack/envtest.sh prints where
// they are, building them if needed). Without them Start fails: a suite
// that needs a real API server must fail, not skip, when it cannot have one.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/helexa-ai/cortex/internal/manager"
)

// Env is a running control plane.
type Env struct {
	env *envtest.Environment
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a client with the cortex scheme.
	Client client.Client
	// Kubeconfig is a kubeconfig file for kubectl and child processes.
	Kubeconfig string
	// Assets is the directory holding kube-apiserver and etcd.
	Assets string
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Assets finds the envtest binaries: $KUBEBUILDER_ASSETS, or the prebuilt
// copy beside the repository.
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dir := filepath.Join(RepoRoot(), "..", "shared", "envtest", "k8s-v1.37.2_etcd-v3.7.3_linux-amd64")
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err == nil {
		return filepath.Abs(dir)
	}
	return "", errors.New("no envtest binaries: set KUBEBUILDER_ASSETS=$(hack/envtest.sh) or run make test")
}

// Start starts the control plane and installs the CRDs.
func Start() (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	e := &Env{env: env, Config: cfg, Assets: assets}
	if e.Client, err = client.New(cfg, client.Options{Scheme: manager.Scheme()}); err != nil {
		_ = env.Stop()
		return nil, err
	}
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("adding a kubectl user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	f, err := os.CreateTemp("", "cortex-envtest-kubeconfig-*")
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	_, _ = f.Write(kc)
	_ = f.Close()
	e.Kubeconfig = f.Name()
	return e, nil
}

// Stop stops the control plane and removes the kubeconfig.
func (e *Env) Stop() error {
	_ = os.Remove(e.Kubeconfig)
	return e.env.Stop()
}

// Kubectl finds kubectl: on PATH, or built beside the envtest binaries.
func (e *Env) Kubectl() (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if p := filepath.Join(dir, "kubectl"); isExec(p) {
			return p, nil
		}
	}
	if p := filepath.Join(e.Assets, "kubectl"); isExec(p) {
		return p, nil
	}
	return "", errors.New("kubectl not found on PATH or beside the envtest binaries (hack/envtest.sh builds one)")
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
