-- PUT of one key with a urlencoded form body, as etcdctl and the v2 clients send it.
-- Usage: wrk -s benchmarks/wrk/put.lua URL -- [VALUE]   (VALUE defaults to "hello")
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function init(args)
   wrk.body = "value=" .. (args[1] or "hello")
end
