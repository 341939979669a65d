// The upstream kube-apiserver, built from k8s.io/kubernetes through this wrapper module: upstream's go.mod
// replaces its staging modules with paths that the module zip does not contain, so `go install` of the
// upstream command cannot resolve them; go.mod here pins each staging module at its published version.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
