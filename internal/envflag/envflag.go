// Package envflag gives every cortex binary the same flag fallbacks: a flag
// --some-name defaults to the environment variable CORTEX_SOME_NAME when it
// is set (else to the field's current value), so a Deployment can configure
// a binary either way.
package envflag

import (
	"flag"
	"os"
	"strconv"
	"strings"
	"time"
)

// Name is the environment variable backing a flag name.
func Name(flag string) string {
	return "CORTEX_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func lookup(name string) (string, bool) { return os.LookupEnv(Name(name)) }

// StringVar binds a string flag.
func StringVar(fs *flag.FlagSet, p *string, name, usage string) {
	if v, ok := lookup(name); ok {
		*p = v
	}
	fs.StringVar(p, name, *p, usage+" (env "+Name(name)+")")
}

// DurationVar binds a duration flag; an unparsable variable is ignored.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name, usage string) {
	if v, ok := lookup(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			*p = d
		}
	}
	fs.DurationVar(p, name, *p, usage+" (env "+Name(name)+")")
}

// Int64Var binds an integer flag; an unparsable variable is ignored.
func Int64Var(fs *flag.FlagSet, p *int64, name, usage string) {
	if v, ok := lookup(name); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			*p = n
		}
	}
	fs.Int64Var(p, name, *p, usage+" (env "+Name(name)+")")
}

// IntVar binds an int flag; an unparsable variable is ignored.
func IntVar(fs *flag.FlagSet, p *int, name, usage string) {
	if v, ok := lookup(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			*p = n
		}
	}
	fs.IntVar(p, name, *p, usage+" (env "+Name(name)+")")
}

// BoolVar binds a boolean flag; an unparsable variable is ignored.
func BoolVar(fs *flag.FlagSet, p *bool, name, usage string) {
	if v, ok := lookup(name); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			*p = b
		}
	}
	fs.BoolVar(p, name, *p, usage+" (env "+Name(name)+")")
}

// Float64Var binds a float flag; an unparsable variable is ignored.
func Float64Var(fs *flag.FlagSet, p *float64, name, usage string) {
	if v, ok := lookup(name); ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			*p = f
		}
	}
	fs.Float64Var(p, name, *p, usage+" (env "+Name(name)+")")
}
