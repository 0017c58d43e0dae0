package deploytest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// metricDef is one metric as defined in the source or documented.
type metricDef struct {
	Name    string
	Type    string // counter, gauge, histogram, summary, untyped; "" when only a Desc tells (checked at run time)
	Labels  []string
	Help    string
	Service string
	Where   string // file:line of the definition
}

// repoRoot is the module root (two levels up from this package).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from %s", wd)
	}
	return root
}

const (
	promPath     = "github.com/prometheus/client_golang/prometheus"
	promautoPath = "github.com/prometheus/client_golang/prometheus/promauto"
)

var constructorTypes = map[string]string{
	"NewCounter": "counter", "NewCounterVec": "counter", "NewCounterFunc": "counter",
	"NewGauge": "gauge", "NewGaugeVec": "gauge", "NewGaugeFunc": "gauge",
	"NewHistogram": "histogram", "NewHistogramVec": "histogram",
	"NewSummary": "summary", "NewSummaryVec": "summary",
	"NewUntypedFunc": "untyped",
	"NewDesc":        "",
}

// serviceOf says which processes expose the metrics defined under dir.
func serviceOf(rel string) string {
	switch {
	case strings.HasPrefix(rel, "ingress/"):
		return "ingress"
	case strings.HasPrefix(rel, "orchestrator/"):
		return "orchestrator"
	case strings.HasPrefix(rel, "shared/channel/"), strings.HasPrefix(rel, "channel-"):
		return "channel"
	default:
		return "all"
	}
}

// scanMetrics finds every metric defined with client_golang in the
// module's non-test Go source (directories with a go.mod of their own are
// other modules: bench, third_party's).
func scanMetrics(t testing.TB, root string) []metricDef {
	t.Helper()
	var defs []metricDef
	var problems []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			base := d.Name()
			if rel != "." && (strings.HasPrefix(base, ".") || base == "testdata" || base == "vendor" || base == "node_modules" || base == "data") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); rel != "." && err == nil {
				return filepath.SkipDir // another module (bench, third_party's): not the module's metrics
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(src), promPath) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", rel, err))
			return nil
		}
		pkgConsts := packageStrings(t, filepath.Dir(path))
		names := map[string]string{} // local import name -> path
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p != promPath && p != promautoPath {
				continue
			}
			local := filepath.Base(p)
			if imp.Name != nil {
				local = imp.Name.Name
			}
			names[local] = p
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			typ, known := constructorTypes[sel.Sel.Name]
			if !known || !fromProm(sel.X, names) {
				return true
			}
			where := fmt.Sprintf("%s:%d", rel, fset.Position(call.Pos()).Line)
			def := metricDef{Type: typ, Service: serviceOf(rel), Where: where}
			if sel.Sel.Name == "NewDesc" {
				if len(call.Args) < 3 {
					return true
				}
				var ok1, ok2 bool
				def.Name, ok1 = evalString(call.Args[0], pkgConsts)
				def.Help, ok2 = evalString(call.Args[1], pkgConsts)
				labels, ok3 := evalStrings(call.Args[2], pkgConsts)
				if !ok1 || !ok2 || !ok3 {
					problems = append(problems, where+": NewDesc name, help and labels must be constant")
					return true
				}
				def.Labels = labels
				defs = append(defs, def)
				return true
			}
			if len(call.Args) == 0 {
				return true
			}
			opts, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				problems = append(problems, where+": metric options must be a composite literal")
				return true
			}
			var ns, sub, name string
			for _, el := range opts.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key := kv.Key.(*ast.Ident).Name
				v, ok := evalString(kv.Value, pkgConsts)
				switch key {
				case "Namespace", "Subsystem", "Name", "Help":
					if !ok {
						problems = append(problems, where+": "+key+" must be a constant string")
						return true
					}
				}
				switch key {
				case "Namespace":
					ns = v
				case "Subsystem":
					sub = v
				case "Name":
					name = v
				case "Help":
					def.Help = v
				}
			}
			def.Name = strings.Join(slices.DeleteFunc([]string{ns, sub, name}, func(s string) bool { return s == "" }), "_")
			if strings.HasSuffix(sel.Sel.Name, "Vec") {
				if len(call.Args) < 2 {
					return true
				}
				labels, ok := evalStrings(call.Args[1], pkgConsts)
				if !ok {
					problems = append(problems, where+": label names must be a constant []string")
					return true
				}
				def.Labels = labels
			}
			defs = append(defs, def)
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("metric definitions the catalogue check cannot read:\n%s", strings.Join(problems, "\n"))
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	return defs
}

// fromProm reports whether x is the prometheus or promauto package, or
// promauto.With(reg).
func fromProm(x ast.Expr, names map[string]string) bool {
	switch x := x.(type) {
	case *ast.Ident:
		_, ok := names[x.Name]
		return ok
	case *ast.CallExpr:
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "With" {
			if id, ok := sel.X.(*ast.Ident); ok {
				return names[id.Name] == promautoPath
			}
		}
	}
	return false
}

// packageStrings collects the package-level string constants and []string
// variables of the package in dir, by name (for metric names and labels
// that are declared once and reused).
type pkgValues struct {
	strs  map[string]string
	lists map[string][]string
}

var pkgCache = map[string]pkgValues{}

func packageStrings(t testing.TB, dir string) pkgValues {
	if v, ok := pkgCache[dir]; ok {
		return v
	}
	v := pkgValues{strs: map[string]string{}, lists: map[string][]string{}}
	pkgCache[dir] = v
	entries, _ := os.ReadDir(dir)
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || (gd.Tok != token.CONST && gd.Tok != token.VAR) {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					if s, ok := evalString(vs.Values[i], v); ok {
						v.strs[n.Name] = s
					} else if l, ok := evalStrings(vs.Values[i], v); ok {
						v.lists[n.Name] = l
					}
				}
			}
		}
	}
	return v
}

func evalString(e ast.Expr, pv pkgValues) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := pv.strs[e.Name]
		return s, ok
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := evalString(e.X, pv)
		b, ok2 := evalString(e.Y, pv)
		return a + b, ok1 && ok2
	case *ast.ParenExpr:
		return evalString(e.X, pv)
	}
	return "", false
}

func evalStrings(e ast.Expr, pv pkgValues) ([]string, bool) {
	switch e := e.(type) {
	case *ast.Ident:
		if e.Name == "nil" {
			return nil, true
		}
		l, ok := pv.lists[e.Name]
		return l, ok
	case *ast.CompositeLit:
		if at, ok := e.Type.(*ast.ArrayType); !ok || fmt.Sprint(at.Elt) != "string" {
			return nil, false
		}
		out := []string{}
		for _, el := range e.Elts {
			s, ok := evalString(el, pv)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}
