// Package cmd holds tagpr's executables; cmd/tagpr is the `tagpr` command.
package cmd
