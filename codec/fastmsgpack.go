package codec

import (
	"encoding"
	"encoding/binary"
	"math"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	"github.com/vmihailenco/tagparser/v2"
)

// fastPlans holds, by target type, the decoders that Format.Decode
// compiles for Msgpack payloads; "Encoding and decoding speed" in the
// package documentation says which types they take, and why they exist.
// A compiled decoder does what msgpack/v5 does for the types and bytes it
// handles and hands everything else back: on bytes it does not expect (an
// array-encoded struct, an extension, a repeated field name, a type
// mismatch) it stops, the target is zeroed again, and msgpack/v5 decodes
// from the start, so errors come from msgpack/v5 alone. It decodes only
// into a zero target, which is what tier always decodes into: a partly
// filled one would need msgpack/v5's merging rules.
type fastPlans struct {
	m sync.Map // reflect.Type of the pointer → *fastNode, or nil
}

// decode decodes data into v, a non-nil pointer, and reports whether it
// did; when it did not, *v is as it was.
func (fp *fastPlans) decode(data []byte, v any) bool {
	t := reflect.TypeOf(v)
	var n *fastNode
	if got, ok := fp.m.Load(t); ok {
		n = got.(*fastNode)
	} else {
		n = compileTop(t.Elem())
		fp.m.Store(t, n)
	}
	if n == nil {
		return false
	}
	ptr := reflect.ValueOf(v)
	rv := ptr.Elem()
	if !rv.IsZero() {
		return false
	}
	if !decodeFast(n, data, ptr.UnsafePointer()) {
		rv.SetZero()
		return false
	}
	return true
}

// decodeFast decodes data as n says into the zero value at p, and reports
// whether it did; when it did not, p may hold part of the value. Like
// Msgpack.Unmarshal, it takes only data that checkMsgpack accepts: its
// reads check every length, it refuses trailing bytes, and skip refuses
// what checkExt refuses and nesting past maxMsgpackDepth.
//
// The decoding is one recursive method over plan nodes rather than
// closures, so that neither p nor the decoder escapes: a caller's target
// stays on its stack.
func decodeFast(n *fastNode, data []byte, p unsafe.Pointer) bool {
	d := fastDecoder{b: data}
	return d.value(n, p) && d.i == len(data)
}

var (
	timeType       = reflect.TypeFor[time.Time]()
	stringType     = reflect.TypeFor[string]()
	customDecoders = []reflect.Type{
		reflect.TypeFor[msgpack.CustomDecoder](),
		reflect.TypeFor[msgpack.Unmarshaler](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	}
)

// fastKind is what a fastNode decodes.
type fastKind uint8

const (
	fastBool fastKind = iota
	fastInt           // any integer kind, size bytes wide
	fastFloat32
	fastFloat64
	fastString
	fastBytes   // a slice of a byte kind
	fastStrings // []string exactly, which msgpack/v5 decodes its own way
	fastSlice
	fastMap
	fastPointer
	fastStruct
	fastTime
)

// fastNode is the plan of the decoding of one type.
type fastNode struct {
	kind   fastKind
	size   uintptr      // fastInt: width; fastSlice: element size
	typ    reflect.Type // fastSlice, fastMap: the type; fastPointer: the element's
	elem   *fastNode    // fastSlice, fastMap: elements; fastPointer: the element
	key    *fastNode    // fastMap: keys
	fields []fastField  // fastStruct
}

// fastField is a struct field as msgpack/v5 names it.
type fastField struct {
	name   string
	offset uintptr
	node   *fastNode
}

var (
	boolNode    = &fastNode{kind: fastBool}
	float32Node = &fastNode{kind: fastFloat32}
	float64Node = &fastNode{kind: fastFloat64}
	stringNode  = &fastNode{kind: fastString}
	bytesNode   = &fastNode{kind: fastBytes}
	stringsNode = &fastNode{kind: fastStrings}
	timeNode    = &fastNode{kind: fastTime}
)

// compileTop returns the plan for a target of type t, or nil. msgpack/v5
// decodes a target as it decodes a field of its type, with one exception:
// a time.Time target also takes a legacy array and an RFC 3339 string.
func compileTop(t reflect.Type) *fastNode {
	if t == timeType {
		return nil
	}
	return compile(t, map[reflect.Type]bool{})
}

// hasCustomDecoder reports whether msgpack/v5 decodes t through a method.
func hasCustomDecoder(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	for _, it := range customDecoders {
		if t.Implements(it) || pt.Implements(it) {
			return true
		}
	}
	return false
}

// compile returns the plan of a value of type t, or nil when the fast
// path does not take t. open holds the types being compiled, to refuse
// recursive types.
func compile(t reflect.Type, open map[reflect.Type]bool) *fastNode {
	switch {
	case t == timeType:
		return timeNode
	case t.Kind() == reflect.Pointer && t.Elem() == timeType:
		// msgpack/v5 looks for the registered decoder of the element
		// before the methods of the pointer (which has UnmarshalText).
		return &fastNode{kind: fastPointer, typ: timeType, elem: timeNode}
	}
	if open[t] || hasCustomDecoder(t) {
		return nil
	}
	open[t] = true
	defer delete(open, t)
	switch t.Kind() {
	case reflect.Bool:
		return boolNode
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// msgpack/v5 truncates to the width (SetInt, SetUint), and so does
		// this; its unsigned decoding gives the same bits as the signed.
		return &fastNode{kind: fastInt, size: t.Size()}
	case reflect.Float32:
		return float32Node
	case reflect.Float64:
		return float64Node
	case reflect.String:
		return stringNode
	case reflect.Slice:
		switch {
		case t.Elem().Kind() == reflect.Uint8:
			return bytesNode
		case t.Elem() == stringType:
			return stringsNode
		}
		if elem := compile(t.Elem(), open); elem != nil {
			return &fastNode{kind: fastSlice, typ: t, size: t.Elem().Size(), elem: elem}
		}
	case reflect.Map:
		if plainMapKey(t.Key().Kind()) {
			key, elem := compile(t.Key(), open), compile(t.Elem(), open)
			if key != nil && elem != nil {
				return &fastNode{kind: fastMap, typ: t, key: key, elem: elem}
			}
		}
	case reflect.Pointer:
		if elem := compile(t.Elem(), open); elem != nil {
			return &fastNode{kind: fastPointer, typ: t.Elem(), elem: elem}
		}
	case reflect.Struct:
		return compileStruct(t, open)
	}
	return nil
}

func compileStruct(t reflect.Type, open map[reflect.Type]bool) *fastNode {
	var fields []fastField
	for i := range t.NumField() {
		f := t.Field(i)
		name, tag, keep := fieldName(f)
		if !keep {
			continue
		}
		if f.Anonymous || tag.HasOption("intern") || tag.HasOption("alias") {
			return nil // inlined fields and other names: msgpack/v5's rules
		}
		node := compile(f.Type, open)
		if node == nil {
			return nil
		}
		ff := fastField{name: name, offset: f.Offset, node: node}
		// A later field of the same name replaces the earlier one, as in
		// msgpack/v5's map of fields.
		if j := indexOfField(fields, name); j >= 0 {
			fields[j] = ff
		} else {
			fields = append(fields, ff)
		}
	}
	if len(fields) > 64 { // structValue's seen is one bit per field
		return nil
	}
	return &fastNode{kind: fastStruct, fields: fields}
}

// plainMapKey reports whether the compiled coders take map keys of kind k.
func plainMapKey(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// fieldName is f's name as the Msgpack codec's msgpack/v5 settings make
// it (the msgpack tag, else the json tag, else the field's name) and its
// parsed tag; keep is false for a field msgpack/v5 leaves out (tagged "-",
// or unexported and not embedded).
func fieldName(f reflect.StructField) (name string, tag *tagparser.Tag, keep bool) {
	tagStr := f.Tag.Get("msgpack")
	if tagStr == "" {
		tagStr = f.Tag.Get("json") // the Msgpack codec's fallback tag
	}
	tag = tagparser.Parse(tagStr)
	if tag.Name == "-" || !f.IsExported() && !f.Anonymous {
		return "", tag, false
	}
	name = tag.Name
	if name == "" {
		name = f.Name
	}
	return name, tag, true
}

func indexOfField(fields []fastField, name string) int {
	for i := range fields {
		if fields[i].name == name {
			return i
		}
	}
	return -1
}

func indexOfFieldBytes(fields []fastField, name []byte) int {
	for i := range fields {
		if fields[i].name == string(name) {
			return i
		}
	}
	return -1
}

// fastDecoder reads MessagePack from b, starting at i.
type fastDecoder struct {
	b     []byte
	i     int
	depth int    // containers of one item or more around i
	arena string // a copy of b that small payloads' strings share, once made
}

// enter notes the start of a container of n items and reports whether
// checkMsgpack allows it; leave notes its end.
func (d *fastDecoder) enter(n int) bool {
	if n == 0 {
		return true
	}
	d.depth++
	return d.depth <= maxMsgpackDepth
}

func (d *fastDecoder) leave(n int) {
	if n > 0 {
		d.depth--
	}
}

func (d *fastDecoder) code() (byte, bool) {
	if d.i >= len(d.b) {
		return 0, false
	}
	c := d.b[d.i]
	d.i++
	return c, true
}

// next returns the next n bytes.
func (d *fastDecoder) next(n int) ([]byte, bool) {
	if n < 0 || n > len(d.b)-d.i {
		return nil, false
	}
	b := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return b, true
}

// length reads the length that follows a code of 8, 16 or 32 bits of
// length: str, bin, array, map and ext codes.
func (d *fastDecoder) length(c byte) (int, bool) {
	var size int
	switch c {
	case msgpcode.Str8, msgpcode.Bin8, msgpcode.Ext8:
		size = 1
	case msgpcode.Str16, msgpcode.Bin16, msgpcode.Array16, msgpcode.Map16, msgpcode.Ext16:
		size = 2
	case msgpcode.Str32, msgpcode.Bin32, msgpcode.Array32, msgpcode.Map32, msgpcode.Ext32:
		size = 4
	default:
		return 0, false
	}
	b, ok := d.next(size)
	if !ok {
		return 0, false
	}
	switch size {
	case 1:
		return int(b[0]), true
	case 2:
		return int(binary.BigEndian.Uint16(b)), true
	}
	return int(binary.BigEndian.Uint32(b)), true
}

// bytes reads a str or bin value, as msgpack/v5's bytesLen does: nil is
// reported as null.
func (d *fastDecoder) bytes() (b []byte, null, ok bool) {
	c, ok := d.code()
	if !ok {
		return nil, false, false
	}
	var n int
	switch {
	case c == msgpcode.Nil:
		return nil, true, true
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	default:
		switch c {
		case msgpcode.Str8, msgpcode.Str16, msgpcode.Str32, msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32:
		default:
			return nil, false, false
		}
		if n, ok = d.length(c); !ok {
			return nil, false, false
		}
	}
	b, ok = d.next(n)
	return b, false, ok
}

// key reads a struct field name: msgpack/v5 reads nil as "".
func (d *fastDecoder) key() ([]byte, bool) {
	b, _, ok := d.bytes()
	return b, ok
}

// int reads an integer as msgpack/v5's Decoder.int does: any integer code,
// and nil as 0.
func (d *fastDecoder) int(c byte) (int64, bool) {
	if c == msgpcode.Nil {
		return 0, true
	}
	if msgpcode.IsFixedNum(c) {
		return int64(int8(c)), true
	}
	var size int
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		size = 1
	case msgpcode.Uint16, msgpcode.Int16:
		size = 2
	case msgpcode.Uint32, msgpcode.Int32:
		size = 4
	case msgpcode.Uint64, msgpcode.Int64:
		size = 8
	default:
		return 0, false
	}
	b, ok := d.next(size)
	if !ok {
		return 0, false
	}
	switch c {
	case msgpcode.Uint8:
		return int64(b[0]), true
	case msgpcode.Int8:
		return int64(int8(b[0])), true
	case msgpcode.Uint16:
		return int64(binary.BigEndian.Uint16(b)), true
	case msgpcode.Int16:
		return int64(int16(binary.BigEndian.Uint16(b))), true
	case msgpcode.Uint32:
		return int64(binary.BigEndian.Uint32(b)), true
	case msgpcode.Int32:
		return int64(int32(binary.BigEndian.Uint32(b))), true
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// value decodes one value as n says into the value at p, and reports
// false when it cannot (p may then hold part of the value).
func (d *fastDecoder) value(n *fastNode, p unsafe.Pointer) bool {
	switch n.kind {
	case fastBool:
		return d.boolValue(p)
	case fastInt:
		return d.intValue(n.size, p)
	case fastFloat32:
		return d.float32Value(p)
	case fastFloat64:
		return d.float64Value(p)
	case fastString:
		return d.stringValue(p)
	case fastBytes:
		return d.bytesValue(p)
	case fastStrings:
		return d.stringsValue(p)
	case fastSlice:
		return d.sliceValue(n, p)
	case fastMap:
		return d.mapValue(n, p)
	case fastPointer:
		return d.pointerValue(n, p)
	case fastStruct:
		return d.structValue(n.fields, p)
	case fastTime:
		return d.timeValue(p)
	}
	return false
}

func (d *fastDecoder) boolValue(p unsafe.Pointer) bool {
	c, ok := d.code()
	switch {
	case !ok:
		return false
	case c == msgpcode.True:
		*(*bool)(p) = true
	case c != msgpcode.False && c != msgpcode.Nil:
		return false
	}
	return true
}

func (d *fastDecoder) intValue(size uintptr, p unsafe.Pointer) bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	n, ok := d.int(c)
	if !ok {
		return false
	}
	switch size {
	case 1:
		*(*uint8)(p) = uint8(n)
	case 2:
		*(*uint16)(p) = uint16(n)
	case 4:
		*(*uint32)(p) = uint32(n)
	default:
		*(*uint64)(p) = uint64(n)
	}
	return true
}

func (d *fastDecoder) float32Value(p unsafe.Pointer) bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	if c == msgpcode.Float {
		b, ok := d.next(4)
		if ok {
			*(*float32)(p) = math.Float32frombits(binary.BigEndian.Uint32(b))
		}
		return ok
	}
	n, ok := d.int(c) // a double is an error in msgpack/v5
	if ok {
		*(*float32)(p) = float32(n)
	}
	return ok
}

func (d *fastDecoder) float64Value(p unsafe.Pointer) bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	switch c {
	case msgpcode.Float:
		b, ok := d.next(4)
		if ok {
			*(*float64)(p) = float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
		}
		return ok
	case msgpcode.Double:
		b, ok := d.next(8)
		if ok {
			*(*float64)(p) = math.Float64frombits(binary.BigEndian.Uint64(b))
		}
		return ok
	}
	n, ok := d.int(c)
	if ok {
		*(*float64)(p) = float64(n)
	}
	return ok
}

// arenaMax is the largest payload whose strings share one allocation: a
// copy of the payload, which each string then keeps alive. Above it each
// string is allocated on its own, so that a small string never pins a
// large payload.
const arenaMax = 512

func (d *fastDecoder) stringValue(p unsafe.Pointer) bool {
	b, _, ok := d.bytes()
	if !ok || len(b) == 0 {
		return ok
	}
	if len(d.b) > arenaMax {
		*(*string)(p) = string(b)
		return true
	}
	if d.arena == "" {
		d.arena = string(d.b)
	}
	*(*string)(p) = d.arena[d.i-len(b) : d.i] // b ends at i
	return true
}

// bytesValue decodes into a nil slice of bytes: nil stays nil, an empty
// str or bin value is an empty slice (msgpack/v5's readN).
func (d *fastDecoder) bytesValue(p unsafe.Pointer) bool {
	b, null, ok := d.bytes()
	if ok && !null {
		*(*[]byte)(p) = append(make([]byte, 0, len(b)), b...)
	}
	return ok
}

// sliceHeader is the layout of a slice.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

// stringsValue decodes a []string as msgpack/v5's decodeStringSlicePtr
// does into a nil one: nil leaves it nil, and an empty array makes it
// empty, not nil.
func (d *fastDecoder) stringsValue(p unsafe.Pointer) bool {
	n, null, ok := d.arrayLen()
	if !ok || null {
		return ok
	}
	if !d.enter(n) {
		return false
	}
	ss := make([]string, n)
	for i := range ss {
		if !d.stringValue(unsafe.Pointer(&ss[i])) {
			return false
		}
	}
	d.leave(n)
	*(*[]string)(p) = ss
	return true
}

// arrayLen reads an array header; nil is reported as null. A length
// greater than the bytes left (each item takes one at least) is refused,
// so that what it makes stays in proportion to the data.
func (d *fastDecoder) arrayLen() (n int, null, ok bool) {
	c, ok := d.code()
	if !ok {
		return 0, false, false
	}
	switch {
	case c == msgpcode.Nil:
		return 0, true, true
	case msgpcode.IsFixedArray(c):
		n = int(c & msgpcode.FixedArrayMask)
	case c == msgpcode.Array16 || c == msgpcode.Array32:
		if n, ok = d.length(c); !ok {
			return 0, false, false
		}
	default:
		return 0, false, false
	}
	return n, false, n <= len(d.b)-d.i
}

func (d *fastDecoder) sliceValue(node *fastNode, p unsafe.Pointer) bool {
	n, null, ok := d.arrayLen()
	if !ok || null {
		return ok
	}
	if !d.enter(n) {
		return false
	}
	base := reflect.MakeSlice(node.typ, n, n).UnsafePointer()
	for i := range n {
		if !d.value(node.elem, unsafe.Add(base, uintptr(i)*node.size)) {
			return false
		}
	}
	d.leave(n)
	*(*sliceHeader)(p) = sliceHeader{data: base, len: n, cap: n}
	return true
}

func (d *fastDecoder) mapValue(node *fastNode, p unsafe.Pointer) bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	var n int
	switch {
	case c == msgpcode.Nil:
		return true
	case msgpcode.IsFixedMap(c):
		n = int(c & msgpcode.FixedMapMask)
	case c == msgpcode.Map16 || c == msgpcode.Map32:
		if n, ok = d.length(c); !ok {
			return false
		}
	default: // msgpack/v5 reads some extensions as maps: let it
		return false
	}
	if n > len(d.b)-d.i || !d.enter(n) {
		return false
	}
	kt, et := node.typ.Key(), node.typ.Elem()
	m := reflect.MakeMapWithSize(node.typ, n)
	for range n {
		// Fresh key and value each time, as msgpack/v5 makes them.
		k, v := reflect.New(kt), reflect.New(et)
		if !d.value(node.key, k.UnsafePointer()) || !d.value(node.elem, v.UnsafePointer()) {
			return false
		}
		m.SetMapIndex(k.Elem(), v.Elem())
	}
	d.leave(n)
	*(*unsafe.Pointer)(p) = m.UnsafePointer() // a map is one pointer
	return true
}

func (d *fastDecoder) pointerValue(node *fastNode, p unsafe.Pointer) bool {
	if d.i < len(d.b) && d.b[d.i] == msgpcode.Nil {
		d.i++
		return true // the nil pointer p holds
	}
	v := reflect.New(node.typ).UnsafePointer()
	if !d.value(node.elem, v) {
		return false
	}
	*(*unsafe.Pointer)(p) = v
	return true
}

func (d *fastDecoder) structValue(fields []fastField, p unsafe.Pointer) bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	var n int
	switch {
	case c == msgpcode.Nil: // the zero struct, which p holds
		return true
	case msgpcode.IsFixedMap(c):
		n = int(c & msgpcode.FixedMapMask)
	case c == msgpcode.Map16 || c == msgpcode.Map32:
		if n, ok = d.length(c); !ok {
			return false
		}
	default: // an array-encoded struct, or not a struct
		return false
	}
	if !d.enter(n) {
		return false
	}
	var seen uint64
	for range n {
		name, ok := d.key()
		if !ok {
			return false
		}
		j := indexOfFieldBytes(fields, name)
		if j < 0 {
			if !d.skip() {
				return false
			}
			continue
		}
		// A repeated name makes msgpack/v5 decode into what the first one
		// left, by rules of its own: let it.
		if seen&(1<<j) != 0 {
			return false
		}
		seen |= 1 << j
		if !d.value(fields[j].node, unsafe.Add(p, fields[j].offset)) {
			return false
		}
	}
	d.leave(n)
	return true
}

// timeValue decodes msgpack/v5's timestamp extension (-1) as the decoder it
// registers for time.Time does: in time.Local, and the zero instant in UTC.
func (d *fastDecoder) timeValue(p unsafe.Pointer) bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	var n int
	switch c {
	case msgpcode.FixExt4:
		n = 4
	case msgpcode.FixExt8:
		n = 8
	case msgpcode.Ext8:
		if n, ok = d.length(c); !ok {
			return false
		}
	default:
		return false
	}
	id, ok := d.code()
	if !ok || int8(id) != -1 {
		return false
	}
	b, ok := d.next(n)
	if !ok {
		return false
	}
	var tm time.Time
	switch n {
	case 4:
		tm = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		v := binary.BigEndian.Uint64(b)
		tm = time.Unix(int64(v&0x00000003ffffffff), int64(v>>34))
	case 12:
		tm = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b)))
	default:
		return false
	}
	if tm.IsZero() {
		tm = tm.UTC()
	}
	*(*time.Time)(p) = tm
	return true
}

// skip reads past one value, as msgpack/v5's Decoder.Skip does.
func (d *fastDecoder) skip() bool {
	c, ok := d.code()
	if !ok {
		return false
	}
	switch {
	case msgpcode.IsFixedNum(c):
		return true
	case msgpcode.IsFixedMap(c):
		return d.skipItems(2 * int(c&msgpcode.FixedMapMask))
	case msgpcode.IsFixedArray(c):
		return d.skipItems(int(c & msgpcode.FixedArrayMask))
	case msgpcode.IsFixedString(c):
		_, ok = d.next(int(c & msgpcode.FixedStrMask))
		return ok
	}
	var n int
	switch c {
	case msgpcode.Nil, msgpcode.False, msgpcode.True:
		return true
	case msgpcode.Uint8, msgpcode.Int8:
		n = 1
	case msgpcode.Uint16, msgpcode.Int16:
		n = 2
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
		n = 4
	case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
		n = 8
	case msgpcode.FixExt1:
		return d.skipExt(1, true)
	case msgpcode.FixExt2:
		return d.skipExt(2, false)
	case msgpcode.FixExt4:
		return d.skipExt(4, false)
	case msgpcode.FixExt8:
		return d.skipExt(8, false)
	case msgpcode.FixExt16:
		return d.skipExt(16, false)
	case msgpcode.Str8, msgpcode.Str16, msgpcode.Str32, msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32:
		if n, ok = d.length(c); !ok {
			return false
		}
	case msgpcode.Ext8, msgpcode.Ext16, msgpcode.Ext32:
		if n, ok = d.length(c); !ok {
			return false
		}
		return d.skipExt(n, false)
	case msgpcode.Array16, msgpcode.Array32:
		if n, ok = d.length(c); !ok {
			return false
		}
		return d.skipItems(n)
	case msgpcode.Map16, msgpcode.Map32:
		if n, ok = d.length(c); !ok {
			return false
		}
		return d.skipItems(2 * n)
	default:
		return false
	}
	_, ok = d.next(n)
	return ok
}

func (d *fastDecoder) skipItems(n int) bool {
	if n > len(d.b)-d.i || !d.enter(n) {
		return false
	}
	for range n {
		if !d.skip() {
			return false
		}
	}
	d.leave(n)
	return true
}

// skipExt reads past an extension body of n bytes after its type, or
// refuses it as checkExt does: an empty body, or an interned string's
// index (fixext is the fixext 1 code).
func (d *fastDecoder) skipExt(n int, fixext bool) bool {
	if n == 0 || d.i >= len(d.b) || fixext && d.b[d.i] == internedStringExt {
		return false
	}
	_, ok := d.next(1 + n)
	return ok
}
