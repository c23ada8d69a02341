package controllers

import (
	"strings"

	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func klogRef(obj client.Object) klog.ObjectRef { return klog.KObj(obj) }

// splitKey splits a Model key "<namespace>/<name>".
func splitKey(key string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(key, "/")
	return ns, name, ok && ns != "" && name != ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
