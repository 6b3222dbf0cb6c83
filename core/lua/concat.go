package lua

import (
	"fmt"

	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
)

// concatName is the local holding the function the .. operator becomes.
// The lexer never makes such a name, so no script can name it.
const concatName = "(concat)"

// wrapChunk makes a script's chunk the body of a function that the
// compiled chunk returns, after taking the concatenation function as its
// argument:
//
//	local (concat) = ...
//	return function(...) <the script, each a .. b .. c as (concat)(a, b, c)> end
//
// gopher-lua's VM joins the operands of .. (OP_CONCAT) in one step that
// no deadline or memory check reaches: "s = s .. s" in a loop grew a
// string to gigabytes in a few instructions. The function charges the
// result to the state before making it.
func wrapChunk(chunk []ast.Stmt) ([]ast.Stmt, error) {
	if err := rewriteStmts(chunk); err != nil {
		return nil, err
	}
	body := &ast.FunctionExpr{ParList: &ast.ParList{HasVargs: true}, Stmts: chunk}
	first, last := 1, 1
	if len(chunk) > 0 { // as glua.Compile sets them for a chunk
		end := chunk[len(chunk)-1]
		first, last = chunk[0].Line(), max(end.LastLine(), end.Line())+1
	}
	body.SetLine(first)
	body.SetLastLine(last)
	arg := &ast.Comma3Expr{}
	local := &ast.LocalAssignStmt{Names: []string{concatName}, Exprs: []ast.Expr{arg}}
	ret := &ast.ReturnStmt{Exprs: []ast.Expr{body}}
	for _, n := range []interface {
		SetLine(int)
		SetLastLine(int)
	}{arg, local, ret} {
		n.SetLine(first)
		n.SetLastLine(first)
	}
	return []ast.Stmt{local, ret}, nil
}

func rewriteStmts(stmts []ast.Stmt) error {
	for _, s := range stmts {
		if err := rewriteStmt(s); err != nil {
			return err
		}
	}
	return nil
}

// rewriteStmt rewrites the expressions and blocks of s. A statement type
// it does not know (a newer gopher-lua) is an error, not a hole.
func rewriteStmt(s ast.Stmt) error {
	switch s := s.(type) {
	case *ast.AssignStmt:
		if err := rewriteExprs(s.Lhs); err != nil {
			return err
		}
		return rewriteExprs(s.Rhs)
	case *ast.LocalAssignStmt:
		return rewriteExprs(s.Exprs)
	case *ast.FuncCallStmt:
		return rewriteExprs([]ast.Expr{s.Expr})
	case *ast.DoBlockStmt:
		return rewriteStmts(s.Stmts)
	case *ast.WhileStmt:
		return rewriteBlock([]*ast.Expr{&s.Condition}, s.Stmts)
	case *ast.RepeatStmt:
		return rewriteBlock([]*ast.Expr{&s.Condition}, s.Stmts)
	case *ast.IfStmt:
		if err := rewriteBlock([]*ast.Expr{&s.Condition}, s.Then); err != nil {
			return err
		}
		return rewriteStmts(s.Else)
	case *ast.NumberForStmt:
		return rewriteBlock([]*ast.Expr{&s.Init, &s.Limit, &s.Step}, s.Stmts)
	case *ast.GenericForStmt:
		if err := rewriteExprs(s.Exprs); err != nil {
			return err
		}
		return rewriteStmts(s.Stmts)
	case *ast.FuncDefStmt:
		if err := rewriteBlock([]*ast.Expr{&s.Name.Func, &s.Name.Receiver}, nil); err != nil {
			return err
		}
		return rewriteStmts(s.Func.Stmts)
	case *ast.ReturnStmt:
		return rewriteExprs(s.Exprs)
	case *ast.BreakStmt, *ast.LabelStmt, *ast.GotoStmt:
		return nil
	}
	return fmt.Errorf("line %d: unknown statement %T", s.Line(), s)
}

// rewriteBlock rewrites the expressions at ps (nil ones skipped) and the
// statements.
func rewriteBlock(ps []*ast.Expr, stmts []ast.Stmt) error {
	for _, p := range ps {
		if *p == nil {
			continue
		}
		e, err := rewriteExpr(*p)
		if err != nil {
			return err
		}
		*p = e
	}
	return rewriteStmts(stmts)
}

// rewriteExprs rewrites each expression of es in place.
func rewriteExprs(es []ast.Expr) error {
	for i := range es {
		e, err := rewriteExpr(es[i])
		if err != nil {
			return err
		}
		es[i] = e
	}
	return nil
}

// rewriteExpr returns e with every concatenation a call of concatName.
func rewriteExpr(e ast.Expr) (ast.Expr, error) {
	switch e := e.(type) {
	case *ast.StringConcatOpExpr:
		return concatCall(e)
	case *ast.TrueExpr, *ast.FalseExpr, *ast.NilExpr, *ast.NumberExpr, *ast.StringExpr,
		*ast.Comma3Expr, *ast.IdentExpr:
		return e, nil
	case *ast.AttrGetExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Object, &e.Key}, nil)
	case *ast.TableExpr:
		for _, f := range e.Fields {
			if err := rewriteBlock([]*ast.Expr{&f.Key, &f.Value}, nil); err != nil {
				return nil, err
			}
		}
		return e, nil
	case *ast.FuncCallExpr:
		if err := rewriteBlock([]*ast.Expr{&e.Func, &e.Receiver}, nil); err != nil {
			return nil, err
		}
		return e, rewriteExprs(e.Args)
	case *ast.LogicalOpExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Lhs, &e.Rhs}, nil)
	case *ast.RelationalOpExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Lhs, &e.Rhs}, nil)
	case *ast.ArithmeticOpExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Lhs, &e.Rhs}, nil)
	case *ast.UnaryMinusOpExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Expr}, nil)
	case *ast.UnaryNotOpExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Expr}, nil)
	case *ast.UnaryLenOpExpr:
		return e, rewriteBlock([]*ast.Expr{&e.Expr}, nil)
	case *ast.FunctionExpr:
		return e, rewriteStmts(e.Stmts)
	}
	return nil, fmt.Errorf("line %d: unknown expression %T", e.Line(), e)
}

// concatCall turns a .. b .. c (a right-leaning chain) into
// concatName(a, b, c). (Not in parentheses: gopher-lua compiles
// "v = (f(v))", v the last parameter, into a call that overwrites v
// before reading it.)
func concatCall(e *ast.StringConcatOpExpr) (ast.Expr, error) {
	var args []ast.Expr
	var cur ast.Expr = e
	for {
		c, ok := cur.(*ast.StringConcatOpExpr)
		if !ok {
			args = append(args, cur)
			break
		}
		args = append(args, c.Lhs)
		cur = c.Rhs
	}
	if err := rewriteExprs(args); err != nil {
		return nil, err
	}
	fn := &ast.IdentExpr{Value: concatName}
	fn.SetLine(e.Line())
	fn.SetLastLine(e.Line())
	call := &ast.FuncCallExpr{Func: fn, Args: args}
	call.SetLine(e.Line())
	call.SetLastLine(e.LastLine())
	return call, nil
}

// concat is the .. operator (the function concatName holds): from the
// right, a run of strings and numbers is joined in one go, and the
// __concat metamethod of a table or userdata operand is called on a pair,
// as gopher-lua's VM does. The joined bytes are charged first.
func (st *state) concat(L *glua.LState) int {
	n := L.GetTop()
	rhs := L.Get(n)
	for i := n - 1; i >= 1; {
		lhs := L.Get(i)
		if !glua.LVCanConvToString(lhs) || !glua.LVCanConvToString(rhs) {
			op := L.GetMetaField(lhs, "__concat")
			if op == glua.LNil {
				op = L.GetMetaField(rhs, "__concat")
			}
			if op.Type() != glua.LTFunction {
				L.RaiseError("cannot perform concat operation between %v and %v", lhs.Type(), rhs.Type())
			}
			L.Push(op)
			L.Push(lhs)
			L.Push(rhs)
			L.Call(2, 1)
			rhs = L.Get(-1)
			L.Pop(1)
			i--
			continue
		}
		j := i
		for j > 1 && glua.LVCanConvToString(L.Get(j-1)) {
			j--
		}
		parts := make([]string, 0, i-j+2)
		total := 0
		for k := j; k <= i; k++ {
			s := glua.LVAsString(L.Get(k))
			parts = append(parts, s)
			total += len(s)
		}
		last := glua.LVAsString(rhs)
		parts = append(parts, last)
		total += len(last)
		st.charge(L, "..", total+stringBytes)
		t := newText(total)
		for _, p := range parts {
			t.add(p)
		}
		rhs = glua.LString(t.String())
		i = j - 1
	}
	L.Push(rhs)
	return 1
}
