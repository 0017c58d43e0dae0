package instrumented_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"sort"
	"testing"

	"github.com/flowgate/flowgate/shared/store"
)

// Every method of the store port is declared on instrumented.Store itself:
// the wrapper embeds the store, so a method added to the port would
// otherwise pass through unmeasured, silently.
func TestEveryPortMethodIsMeasured(t *testing.T) {
	fs := token.NewFileSet()
	pkgs, err := parser.ParseDir(fs, ".", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, p := range pkgs {
		for name, f := range p.Files {
			if len(name) > len("_test.go") && name[len(name)-len("_test.go"):] == "_test.go" {
				continue
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv == nil || len(fd.Recv.List) != 1 {
					continue
				}
				if star, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := star.X.(*ast.Ident); ok && id.Name == "Store" {
						declared[fd.Name.Name] = true
					}
				}
			}
		}
	}
	port := reflect.TypeOf((*store.Store)(nil)).Elem()
	var missing []string
	for i := range port.NumMethod() {
		if name := port.Method(i).Name; !declared[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("instrumented.Store does not declare %d of the port's %d methods (they pass through unmeasured): %v",
			len(missing), port.NumMethod(), missing)
	}
}
