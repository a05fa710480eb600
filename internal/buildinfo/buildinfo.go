// Package buildinfo says which tagpr made an output: its version and the
// git commit it was built from, for the reports and the stage summaries a
// run leaves (a result reproduces only with the code that made it).
//
// `make build` sets Commit with -ldflags -X; a plain `go build` in a clone
// gets it from the VCS stamp Go embeds (not with -buildvcs=false); a binary
// built from a module download (`go install …@vX`) names its module
// version. It imports nothing from tagpr.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Version is tagpr's version (cmd/tagpr's version, set at build time).
var Version = "0.1.0-dev"

// Commit is the git commit tagpr was built from, with "-modified" when the
// tree had uncommitted changes: set by `make build` (-ldflags "-X
// github.com/tagpr/tagpr/internal/buildinfo.Commit=…"); "" reads Go's VCS
// stamp.
var Commit = ""

// readBuildInfo is debug.ReadBuildInfo (a variable for tests).
var readBuildInfo = debug.ReadBuildInfo

// commit is Commit, else the commit Go's VCS stamp names ("-modified"
// added as Commit carries it), else the module version of a `go install
// …@vX` build; "" when the build recorded none.
func commit() string {
	if Commit != "" {
		return Commit
	}
	info, ok := readBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		if modified == "true" {
			rev += "-modified"
		}
		return rev
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return "module " + v
	}
	return ""
}

// String names this build: "tagpr VERSION (commit C)", or says the build
// recorded no commit and how to get one.
func String() string {
	c := commit()
	if c == "" {
		return "tagpr " + Version + " (commit unknown: built without VCS information; `make build` records it)"
	}
	if strings.HasPrefix(c, "module ") {
		return "tagpr " + Version + " (" + c + ")"
	}
	return "tagpr " + Version + " (commit " + c + ")"
}
