package lua

import (
	"bytes"
	"fmt"
	"strings"

	glua "github.com/yuin/gopher-lua"

	"github.com/mailgate/gateway/sdk"
)

// Limits on what a script asks of the core.
const (
	maxHeaderLine = 998   // RFC 5322 line length, for added field values
	maxList       = 10000 // recipients, reply lines, skips
)

var msgMethods = []string{
	"header", "headers", "header_names", "size", "body",
	"add_header", "remove_header", "set_header", "set_body",
}

// defineMsg builds the metatable of ctx.msg.
func (st *state) defineMsg() {
	L := st.L
	methods := L.NewTable()
	fns := map[string]glua.LGFunction{
		"header":        st.msgHeader,
		"headers":       st.msgHeaders,
		"header_names":  st.msgHeaderNames,
		"size":          st.msgSize,
		"body":          st.msgBody,
		"add_header":    st.msgAddHeader,
		"remove_header": st.msgRemoveHeader,
		"set_header":    st.msgSetHeader,
		"set_body":      st.msgSetBody,
	}
	for _, name := range msgMethods {
		methods.RawSetString(name, L.NewFunction(fns[name]))
	}
	st.msgMeta = L.NewTable()
	st.msgMeta.RawSetString("__index", methods)
	st.msgMeta.RawSetString("__newindex", L.NewFunction(func(L *glua.LState) int {
		L.RaiseError("msg is read-only; use msg:set_header and friends")
		return 0
	}))
	st.msgMeta.RawSetString("__metatable", glua.LString("gw.msg"))
	st.msgMeta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString("gw.msg"))
		return 1
	}))
}

// msgCall returns the live call whose msg is argument 1.
func (st *state) msgCall(L *glua.LState, method string) *call {
	ud, ok := L.Get(1).(*glua.LUserData)
	if ok {
		if c, ok := ud.Value.(*call); ok && ud.Metatable == st.msgMeta {
			if !c.owns(ud) {
				L.RaiseError("msg:%s: the message of a finished call", method)
			}
			return c
		}
	}
	L.RaiseError("msg:%s: call it as a method, msg:%s(…)", method, method)
	return nil
}

// sharedHeader is a message whose header fields can be read without a
// copy (message.View); the reader must not change them, and msg's
// methods only read them.
type sharedHeader interface {
	SharedHeader() ([]sdk.HeaderField, error)
}

// fields returns the message's header fields, read once per call.
func (c *call) fields(L *glua.LState, method string) []sdk.HeaderField {
	if c.header == nil {
		var h []sdk.HeaderField
		var err error
		if sh, ok := c.msg.(sharedHeader); ok {
			h, err = sh.SharedHeader()
		} else {
			h, err = c.msg.Header()
		}
		if err != nil {
			L.RaiseError("msg:%s: %v", method, err)
		}
		if h == nil {
			h = []sdk.HeaderField{}
		}
		c.header = h
	}
	return c.header
}

func (st *state) msgHeader(L *glua.LState) int {
	c := st.msgCall(L, "header")
	name := L.CheckString(2)
	for _, f := range c.fields(L, "header") {
		if strings.EqualFold(f.Name, name) {
			L.Push(glua.LString(f.Value))
			return 1
		}
	}
	L.Push(glua.LNil)
	return 1
}

func (st *state) msgHeaders(L *glua.LState) int {
	c := st.msgCall(L, "headers")
	name := L.CheckString(2)
	t := L.NewTable()
	for _, f := range c.fields(L, "headers") {
		if strings.EqualFold(f.Name, name) {
			t.Append(glua.LString(f.Value))
		}
	}
	L.Push(t)
	return 1
}

func (st *state) msgHeaderNames(L *glua.LState) int {
	c := st.msgCall(L, "header_names")
	fs := c.fields(L, "header_names")
	t := L.CreateTable(len(fs), 0)
	for _, f := range fs {
		t.Append(glua.LString(f.Name))
	}
	L.Push(t)
	return 1
}

func (st *state) msgSize(L *glua.LState) int {
	c := st.msgCall(L, "size")
	L.Push(glua.LNumber(c.msg.Size()))
	return 1
}

// msgBody returns the body up to the limit, and whether it was cut.
func (st *state) msgBody(L *glua.LState) int {
	c := st.msgCall(L, "body")
	if c.body == nil {
		st.waited = true // it may read the spool's file
		limit := int(st.s.bodyLimit)
		st.charge(L, "msg:body", 2*(stringBytes+int(min(st.s.bodyLimit, c.msg.Size()))))
		b, err := c.msg.Body(limit + 1)
		if err != nil {
			L.RaiseError("msg:body: %v", err)
		}
		c.bodyCut = len(b) > limit
		if c.bodyCut {
			b = b[:limit]
		}
		c.body = glua.LString(b)
	}
	L.Push(c.body)
	L.Push(glua.LBool(c.bodyCut))
	return 2
}

func (st *state) msgAddHeader(L *glua.LState) int {
	c := st.msgCall(L, "add_header")
	name, value := checkFieldName(L, "msg:add_header", 2), checkFieldValue(L, "msg:add_header", 3)
	if len(c.eff.AddHeaders) >= maxList {
		L.RaiseError("msg:add_header: more than %d fields", maxList)
	}
	st.charge(L, "msg:add_header", len(name)+len(value)+2*stringBytes)
	c.eff.AddHeaders = append(c.eff.AddHeaders, sdk.HeaderField{Name: name, Value: value})
	return 0
}

func (st *state) msgRemoveHeader(L *glua.LState) int {
	c := st.msgCall(L, "remove_header")
	name := checkFieldName(L, "msg:remove_header", 2)
	if len(c.eff.RemoveHeaders) >= maxList {
		L.RaiseError("msg:remove_header: more than %d fields", maxList)
	}
	c.eff.RemoveHeaders = append(c.eff.RemoveHeaders, name)
	return 0
}

func (st *state) msgSetHeader(L *glua.LState) int {
	c := st.msgCall(L, "set_header")
	name, value := checkFieldName(L, "msg:set_header", 2), checkFieldValue(L, "msg:set_header", 3)
	if len(c.eff.AddHeaders) >= maxList || len(c.eff.RemoveHeaders) >= maxList {
		L.RaiseError("msg:set_header: more than %d fields", maxList)
	}
	c.eff.RemoveHeaders = append(c.eff.RemoveHeaders, name)
	c.eff.AddHeaders = append(c.eff.AddHeaders, sdk.HeaderField{Name: name, Value: value})
	return 0
}

// msgSetBody makes Effects.Body the received header, a blank line and the
// new body with bare LF turned into CRLF.
func (st *state) msgSetBody(L *glua.LState) int {
	c := st.msgCall(L, "set_body")
	body := L.CheckString(2)
	st.charge(L, "msg:set_body", 2*len(body))
	var b bytes.Buffer
	for _, f := range c.fields(L, "set_body") {
		b.WriteString(f.Name)
		b.WriteString(": ")
		b.WriteString(f.Value)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	for i := 0; i < len(body); i++ {
		if body[i] == '\n' && (i == 0 || body[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(body[i])
	}
	c.eff.Body = b.Bytes()
	return 0
}

// checkFieldName checks a header field name (RFC 5322 ftext: printable
// ASCII but colon).
func checkFieldName(L *glua.LState, fn string, n int) string {
	name := L.CheckString(n)
	if name == "" || len(name) > 76 {
		L.ArgError(n, fmt.Sprintf("%s: bad header field name %q", fn, truncate(name, 80)))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			L.ArgError(n, fmt.Sprintf("%s: bad header field name %q", fn, name))
		}
	}
	return name
}

// checkFieldValue checks a header field value: one line, no NUL, CR or LF.
func checkFieldValue(L *glua.LState, fn string, n int) string {
	v := L.CheckString(n)
	if len(v) > maxHeaderLine {
		L.ArgError(n, fmt.Sprintf("%s: value longer than %d bytes", fn, maxHeaderLine))
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		L.ArgError(n, fmt.Sprintf("%s: value has CR, LF or NUL", fn))
	}
	return v
}
