package chart

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// binaries maps each component to the sources that define its flags.
var binaries = map[string][]string{
	"manager": {"cmd/manager", "internal/manager"},
	"gateway": {"cmd/gateway", "internal/gateway"},
	"neuron":  {"cmd/neuron", "internal/neuron"},
}

var flagName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// flagsDefinedIn reads the flag names a binary defines from its sources:
// the name argument of every flag.*, fs.*Var or envflag.*Var call (and of
// helpers named like them, such as quantityVar), plus the zap logging
// flags every cortex binary binds. Parsing rather than importing keeps this
// test independent of each package's build (the neuron links llama.cpp).
func flagsDefinedIn(t *testing.T, dirs []string) map[string]bool {
	t.Helper()
	flags := map[string]bool{"help": true, "h": true}
	zfs := flag.NewFlagSet("zap", flag.ContinueOnError)
	(&zap.Options{}).BindFlags(zfs)
	zfs.VisitAll(func(f *flag.Flag) { flags[f.Name] = true })

	isFlagCall := func(name string) bool {
		switch name {
		case "String", "Bool", "Int", "Int64", "Uint", "Uint64", "Float64", "Duration", "Func", "BoolFunc", "Var", "TextVar":
			return true
		}
		return strings.HasSuffix(name, "Var")
	}
	fset := token.NewFileSet()
	found := 0
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatalf("parsing %s: %v", f, err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				var fn string
				switch f := call.Fun.(type) {
				case *ast.SelectorExpr:
					fn = f.Sel.Name
				case *ast.Ident:
					fn = f.Name
				}
				if !isFlagCall(fn) {
					return true
				}
				for _, a := range call.Args {
					if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if name := strings.Trim(lit.Value, "`\""); flagName.MatchString(name) {
							flags[name] = true
							found++
						}
						break // the first string argument is the name
					}
				}
				return true
			})
		}
	}
	if found == 0 {
		t.Fatalf("found no flag definitions in %v: has the flag code moved?", dirs)
	}
	return flags
}

// argFlag returns the flag name of a command-line argument, or "".
func argFlag(arg string) string {
	if !strings.HasPrefix(arg, "-") {
		return ""
	}
	name := strings.TrimLeft(arg, "-")
	name, _, _ = strings.Cut(name, "=")
	return name
}

// TestFlagsExist: every flag the chart passes to a binary is one the binary
// defines. A renamed or missing flag makes the binary exit at start; here
// it fails the build instead. For the neuron this is where the chart's
// command line (templates/neuron/_args.tpl) is reconciled with the code.
func TestFlagsExist(t *testing.T) {
	workloads := map[string]string{
		"manager": "Deployment/cortex-manager",
		"gateway": "Deployment/cortex-gateway",
		"neuron":  "DaemonSet/cortex-neuron",
	}
	for component, dirs := range binaries {
		t.Run(component, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(root, dirs[1])); err != nil {
				t.Fatalf("%s: %v", dirs[1], err)
			}
			defined := flagsDefinedIn(t, dirs)
			checked := 0
			for _, vs := range valueSets {
				_, objs := render(t, vs)
				tpl, ok := podTemplates(t, objs)[workloads[component]]
				if !ok {
					continue
				}
				c := container(t, tpl, component)
				if len(c.Command) != 0 {
					t.Errorf("%s: the chart overrides the image's entrypoint: %v", vs.name, c.Command)
				}
				for _, a := range c.Args {
					name := argFlag(a)
					if name == "" {
						t.Errorf("%s: argument %q is not a flag", vs.name, a)
						continue
					}
					checked++
					if !defined[name] {
						t.Errorf("%s: the chart passes --%s to the %s, which defines no such flag (in %v)", vs.name, name, component, dirs)
					}
				}
			}
			if checked == 0 {
				t.Fatal("no arguments checked")
			}
		})
	}
}

// TestNeuronArgsInOnePlace: the DaemonSet takes the neuron's flags and
// environment only from templates/neuron/_args.tpl.
func TestNeuronArgsInOnePlace(t *testing.T) {
	ds := readFile(t, filepath.Join(chartDir, "templates", "neuron", "daemonset.yaml"))
	if regexp.MustCompile(`(?m)^\s*- --`).MatchString(ds) {
		t.Error("templates/neuron/daemonset.yaml lists flags itself; keep them in _args.tpl")
	}
	for _, include := range []string{`include "cortex.neuron.args"`, `include "cortex.neuron.env"`} {
		if !strings.Contains(ds, include) {
			t.Errorf("the DaemonSet does not %s", include)
		}
	}
	args := readFile(t, filepath.Join(chartDir, "templates", "neuron", "_args.tpl"))
	for _, f := range []string{"--addr", "--node-name", "--pod-ip", "--token-file", "--cache-dir", "--heartbeat-interval", "--memory-limit"} {
		if !slices.ContainsFunc(strings.Split(args, "\n"), func(l string) bool { return strings.Contains(l, "- "+f+"=") }) {
			t.Errorf("_args.tpl does not pass %s", f)
		}
	}
}
