-- wrk script: keep the URL's host name (SNI and Host header) but connect to
-- 127.0.0.1, so the bench needs no /etc/hosts entry for the test names.
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
