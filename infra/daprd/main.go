// daprd exactly as upstream's cmd/daprd/main.go starts it; which components it registers is chosen
// at build time by scripts/daprd.sh.
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() {
	app.Run()
}
