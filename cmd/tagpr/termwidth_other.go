//go:build !unix

package main

import "os"

// terminalColumns is the width of the terminal f is, or 0 when it says none.
func terminalColumns(f *os.File) int { return 0 }
