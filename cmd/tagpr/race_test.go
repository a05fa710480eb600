//go:build race

package main

func init() { tagprBuildFlags = append(tagprBuildFlags, "-race") }
