package codec

import (
	"encoding"
	"encoding/binary"
	"math"
	"reflect"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The compiled encoder is the decoder's counterpart (see fastmsgpack.go,
// and "Encoding and decoding speed" in the package documentation for the
// types it takes): it writes the bytes msgpack/v5 writes with the settings
// of the Msgpack codec (fixed-width sized integers, compact int and uint,
// float32 and float64 kept apart, the json tag as the fallback name)
// straight into the output buffer. Maps are written in Go's iteration
// order, as msgpack/v5 writes them; every other value is byte for byte
// msgpack/v5's (TestFastEncoderMatchesMsgpack, FuzzFastEncoder).

// encKind is what an encNode writes.
type encKind uint8

const (
	encBool        encKind = iota
	encIntCompact          // int: the fewest bytes (EncodeInt)
	encUintCompact         // uint: the fewest bytes (EncodeUint)
	encIntFixed            // int8 … int64: size bytes after the code
	encUintFixed           // uint8 … uint64
	encFloat32
	encFloat64
	encString
	encBytes // a slice of a byte kind
	encSlice
	encMap
	encPointer
	encStruct
	encTime
)

// encNode is the plan of the encoding of one type.
type encNode struct {
	kind         encKind
	size         uintptr      // encIntFixed, encUintFixed: width; encSlice: element size
	typ          reflect.Type // encMap: the type
	elem, key    *encNode     // encSlice, encPointer: elements; encMap: values and keys
	fields       []encField   // encStruct, in order, repeated names included
	hasOmitEmpty bool         // encStruct: a field has omitempty
}

// encField is a struct field as msgpack/v5 writes it.
type encField struct {
	name      []byte // the field's name, encoded as a msgpack string
	offset    uintptr
	node      *encNode
	omitEmpty bool
}

var (
	customEncoders = []reflect.Type{
		reflect.TypeFor[msgpack.CustomEncoder](),
		reflect.TypeFor[msgpack.Marshaler](),
		reflect.TypeFor[encoding.BinaryMarshaler](),
		reflect.TypeFor[encoding.TextMarshaler](),
	}
	isZeroerType = reflect.TypeFor[interface{ IsZero() bool }]()
	timeEncNode  = &encNode{kind: encTime}
)

// hasCustomEncoder reports whether msgpack/v5 encodes t through a method.
func hasCustomEncoder(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	for _, it := range customEncoders {
		if t.Implements(it) || pt.Implements(it) {
			return true
		}
	}
	return false
}

// compileEncoder returns the plan for encoding a value of type t, or nil.
// msgpack/v5's Encode writes a top-level value as it writes a field of its
// type, so one plan serves both.
func compileEncoder(t reflect.Type) *encNode {
	return compileEnc(t, map[reflect.Type]bool{})
}

func compileEnc(t reflect.Type, open map[reflect.Type]bool) *encNode {
	switch {
	case t == timeType:
		return timeEncNode
	case t.Kind() == reflect.Pointer && t.Elem() == timeType:
		// msgpack/v5 looks for the registered encoder of the element
		// before the methods of the pointer.
		return &encNode{kind: encPointer, elem: timeEncNode}
	}
	if open[t] || hasCustomEncoder(t) {
		return nil
	}
	open[t] = true
	defer delete(open, t)
	switch k := t.Kind(); k {
	case reflect.Bool:
		return &encNode{kind: encBool}
	case reflect.Int:
		return &encNode{kind: encIntCompact}
	case reflect.Uint:
		return &encNode{kind: encUintCompact}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &encNode{kind: encIntFixed, size: t.Size()}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &encNode{kind: encUintFixed, size: t.Size()}
	case reflect.Float32:
		return &encNode{kind: encFloat32}
	case reflect.Float64:
		return &encNode{kind: encFloat64}
	case reflect.String:
		return &encNode{kind: encString}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &encNode{kind: encBytes}
		}
		if elem := compileEnc(t.Elem(), open); elem != nil {
			return &encNode{kind: encSlice, size: t.Elem().Size(), elem: elem}
		}
	case reflect.Map:
		if plainMapKey(t.Key().Kind()) {
			key, elem := compileEnc(t.Key(), open), compileEnc(t.Elem(), open)
			if key != nil && elem != nil {
				return &encNode{kind: encMap, typ: t, key: key, elem: elem}
			}
		}
	case reflect.Pointer:
		if elem := compileEnc(t.Elem(), open); elem != nil {
			return &encNode{kind: encPointer, elem: elem}
		}
	case reflect.Struct:
		return compileEncStruct(t, open)
	}
	return nil
}

func compileEncStruct(t reflect.Type, open map[reflect.Type]bool) *encNode {
	n := &encNode{kind: encStruct}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "_msgpack" {
			return nil // struct-wide options: msgpack/v5's rules
		}
		name, tag, keep := fieldName(f)
		if !keep {
			continue
		}
		if f.Anonymous || tag.HasOption("intern") || tag.HasOption("alias") {
			return nil
		}
		omit := tag.HasOption("omitempty")
		if omit && f.Type != timeType && f.Type.Implements(isZeroerType) {
			return nil // msgpack/v5 asks the value's IsZero
		}
		node := compileEnc(f.Type, open)
		if node == nil {
			return nil
		}
		n.fields = append(n.fields, encField{name: appendString(nil, name), offset: f.Offset, node: node, omitEmpty: omit})
		n.hasOmitEmpty = n.hasOmitEmpty || omit
	}
	return n
}

// encodeFast appends to dst the encoding, as n says, of the value at p.
// It keeps no pointer to p, so a caller's value stays on its stack.
func encodeFast(n *encNode, dst []byte, p unsafe.Pointer) []byte {
	switch n.kind {
	case encBool:
		if *(*bool)(p) {
			return append(dst, msgpcode.True)
		}
		return append(dst, msgpcode.False)
	case encIntCompact:
		return appendInt(dst, int64(*(*int)(p)))
	case encUintCompact:
		return appendUint(dst, uint64(*(*uint)(p)))
	case encIntFixed:
		switch n.size {
		case 1:
			return append(dst, msgpcode.Int8, *(*uint8)(p))
		case 2:
			return binary.BigEndian.AppendUint16(append(dst, msgpcode.Int16), *(*uint16)(p))
		case 4:
			return binary.BigEndian.AppendUint32(append(dst, msgpcode.Int32), *(*uint32)(p))
		}
		return binary.BigEndian.AppendUint64(append(dst, msgpcode.Int64), *(*uint64)(p))
	case encUintFixed:
		switch n.size {
		case 1:
			return append(dst, msgpcode.Uint8, *(*uint8)(p))
		case 2:
			return binary.BigEndian.AppendUint16(append(dst, msgpcode.Uint16), *(*uint16)(p))
		case 4:
			return binary.BigEndian.AppendUint32(append(dst, msgpcode.Uint32), *(*uint32)(p))
		}
		return binary.BigEndian.AppendUint64(append(dst, msgpcode.Uint64), *(*uint64)(p))
	case encFloat32:
		return binary.BigEndian.AppendUint32(append(dst, msgpcode.Float), math.Float32bits(*(*float32)(p)))
	case encFloat64:
		return binary.BigEndian.AppendUint64(append(dst, msgpcode.Double), math.Float64bits(*(*float64)(p)))
	case encString:
		return appendString(dst, *(*string)(p))
	case encBytes:
		b := *(*[]byte)(p)
		if b == nil {
			return append(dst, msgpcode.Nil)
		}
		return append(appendBytesLen(dst, len(b)), b...)
	case encSlice:
		s := *(*sliceHeader)(p)
		if s.data == nil {
			return append(dst, msgpcode.Nil)
		}
		dst = appendArrayLen(dst, s.len)
		for i := range s.len {
			dst = encodeFast(n.elem, dst, unsafe.Add(s.data, uintptr(i)*n.size))
		}
		return dst
	case encMap:
		mp := *(*unsafe.Pointer)(p) // a map is one pointer
		if mp == nil {
			return append(dst, msgpcode.Nil)
		}
		// Through a copy of the pointer, so that p does not escape.
		m := reflect.NewAt(n.typ, unsafe.Pointer(&mp)).Elem()
		dst = appendMapLen(dst, m.Len())
		k, v := reflect.New(n.typ.Key()).Elem(), reflect.New(n.typ.Elem()).Elem()
		for it := m.MapRange(); it.Next(); {
			k.SetIterKey(it)
			v.SetIterValue(it)
			dst = encodeFast(n.key, dst, k.Addr().UnsafePointer())
			dst = encodeFast(n.elem, dst, v.Addr().UnsafePointer())
		}
		return dst
	case encPointer:
		e := *(*unsafe.Pointer)(p)
		if e == nil {
			return append(dst, msgpcode.Nil)
		}
		return encodeFast(n.elem, dst, e)
	case encStruct:
		count := len(n.fields)
		if n.hasOmitEmpty {
			for _, f := range n.fields {
				if f.omitEmpty && isEmpty(f.node, unsafe.Add(p, f.offset)) {
					count--
				}
			}
		}
		dst = appendMapLen(dst, count)
		for _, f := range n.fields {
			fp := unsafe.Add(p, f.offset)
			if f.omitEmpty && isEmpty(f.node, fp) {
				continue
			}
			dst = encodeFast(f.node, append(dst, f.name...), fp)
		}
		return dst
	case encTime:
		return appendTime(dst, *(*time.Time)(p))
	}
	panic("codec: unknown encoder node") // compileEnc makes no other kind
}

// isEmpty is msgpack/v5's isEmptyValue, for the kinds a plan holds.
func isEmpty(n *encNode, p unsafe.Pointer) bool {
	switch n.kind {
	case encBool:
		return !*(*bool)(p)
	case encIntCompact, encUintCompact:
		return *(*uint)(p) == 0
	case encIntFixed, encUintFixed:
		switch n.size {
		case 1:
			return *(*uint8)(p) == 0
		case 2:
			return *(*uint16)(p) == 0
		case 4:
			return *(*uint32)(p) == 0
		}
		return *(*uint64)(p) == 0
	case encFloat32:
		return *(*float32)(p) == 0
	case encFloat64:
		return *(*float64)(p) == 0
	case encString:
		return len(*(*string)(p)) == 0
	case encBytes, encSlice:
		return (*sliceHeader)(p).len == 0
	case encMap:
		mp := *(*unsafe.Pointer)(p)
		return mp == nil || reflect.NewAt(n.typ, unsafe.Pointer(&mp)).Elem().Len() == 0
	case encPointer:
		return *(*unsafe.Pointer)(p) == nil
	case encStruct:
		// msgpack/v5: empty when no field would be written.
		for _, f := range n.fields {
			if !f.omitEmpty || !isEmpty(f.node, unsafe.Add(p, f.offset)) {
				return false
			}
		}
		return true
	case encTime:
		return (*time.Time)(p).IsZero()
	}
	return false
}

// appendInt is msgpack/v5's EncodeInt: the fewest bytes.
func appendInt(dst []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendUint(dst, uint64(n))
	case n >= -32:
		return append(dst, byte(n))
	case n >= math.MinInt8:
		return append(dst, msgpcode.Int8, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, msgpcode.Int16), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, msgpcode.Int32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, msgpcode.Int64), uint64(n))
}

// appendUint is msgpack/v5's EncodeUint: the fewest bytes.
func appendUint(dst []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(dst, byte(n))
	case n <= math.MaxUint8:
		return append(dst, msgpcode.Uint8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, msgpcode.Uint16), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, msgpcode.Uint32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, msgpcode.Uint64), n)
}

func appendString(dst []byte, s string) []byte {
	switch l := len(s); {
	case l < 32:
		dst = append(dst, msgpcode.FixedStrLow|byte(l))
	case l < 256:
		dst = append(dst, msgpcode.Str8, byte(l))
	case l <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, msgpcode.Str16), uint16(l))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, msgpcode.Str32), uint32(l))
	}
	return append(dst, s...)
}

func appendBytesLen(dst []byte, l int) []byte {
	switch {
	case l < 256:
		return append(dst, msgpcode.Bin8, byte(l))
	case l <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, msgpcode.Bin16), uint16(l))
	}
	return binary.BigEndian.AppendUint32(append(dst, msgpcode.Bin32), uint32(l))
}

func appendArrayLen(dst []byte, l int) []byte {
	switch {
	case l < 16:
		return append(dst, msgpcode.FixedArrayLow|byte(l))
	case l <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, msgpcode.Array16), uint16(l))
	}
	return binary.BigEndian.AppendUint32(append(dst, msgpcode.Array32), uint32(l))
}

func appendMapLen(dst []byte, l int) []byte {
	switch {
	case l < 16:
		return append(dst, msgpcode.FixedMapLow|byte(l))
	case l <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, msgpcode.Map16), uint16(l))
	}
	return binary.BigEndian.AppendUint32(append(dst, msgpcode.Map32), uint32(l))
}

// appendTime is msgpack/v5's timestamp extension (-1): 4, 8 or 12 bytes.
func appendTime(dst []byte, tm time.Time) []byte {
	secs := uint64(tm.Unix())
	if secs>>34 == 0 {
		data := uint64(tm.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(dst, msgpcode.FixExt4, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(dst, msgpcode.FixExt8, 0xff), data)
	}
	dst = binary.BigEndian.AppendUint32(append(dst, msgpcode.Ext8, 12, 0xff), uint32(tm.Nanosecond()))
	return binary.BigEndian.AppendUint64(dst, secs)
}
