// Package configs holds the run configs shipped with tagpr. demo.yaml is the
// built-in default (what `tagpr run` and `tagpr demo` use without -c),
// embedded so the binary works from any directory.
package configs

import _ "embed"

// Demo is configs/demo.yaml.
//
//go:embed demo.yaml
var Demo []byte
