;; A load balancer for the sandbox's tests whose create traps.
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "kantai:policy/load-balancer@0.1.0#create") (param i32 i32) (result i32) unreachable)
  (func (export "kantai:policy/load-balancer@0.1.0#reads") (param i32) (result i32) (i32.const 16))
  (func (export "kantai:policy/load-balancer@0.1.0#pick") (param i32) (result i32) (i32.const 0))
  (func (export "kantai:policy/load-balancer@0.1.0#observe") (param i32 i64 i64 i64))
  (func (export "kantai:policy/load-balancer@0.1.0#destroy") (param i32))
)
