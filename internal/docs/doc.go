// Package docs holds the documentation test: the README's shell commands checked against what the repository
// really has (make targets, files, chart values, plugin subcommands and flags), and the ones that need no cluster
// run as written.
package docs
