package buildinfo

import (
	"runtime/debug"
	"testing"
)

// The commit comes from -ldflags first, then Go's VCS stamp (with
// -modified for a dirty tree), then the module version of a `go install
// …@vX`; a build with none says so.
func TestStringFallbacks(t *testing.T) {
	defer func(c string, f func() (*debug.BuildInfo, bool)) { Commit, readBuildInfo = c, f }(Commit, readBuildInfo)
	info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	readBuildInfo = func() (*debug.BuildInfo, bool) { return info, true }
	for _, c := range []struct {
		commit   string
		settings []debug.BuildSetting
		module   string
		want     string
	}{
		{"abc-modified", nil, "(devel)", "tagpr 0.1.0-dev (commit abc-modified)"},
		{"", []debug.BuildSetting{{Key: "vcs.revision", Value: "def"}, {Key: "vcs.modified", Value: "true"}}, "(devel)", "tagpr 0.1.0-dev (commit def-modified)"},
		{"", []debug.BuildSetting{{Key: "vcs.revision", Value: "def"}, {Key: "vcs.modified", Value: "false"}}, "(devel)", "tagpr 0.1.0-dev (commit def)"},
		{"", nil, "v1.2.3", "tagpr 0.1.0-dev (module v1.2.3)"},
		{"", nil, "(devel)", "tagpr 0.1.0-dev (commit unknown: built without VCS information; `make build` records it)"},
	} {
		Commit, info.Settings, info.Main.Version = c.commit, c.settings, c.module
		if got := String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}
