#!/usr/bin/env bash
# Makes a throwaway PKI for the TLS benchmarks in DIR (default
# /tmp/wsedge-tls): ca.pem (the CA clients trust), and two server
# certificates for localhost / 127.0.0.1 signed by it: ec.pem + ec-key.pem
# (ECDSA P-256) and rsa.pem + rsa-key.pem (RSA 2048). Needs openssl.
set -eu
dir=${1:-/tmp/wsedge-tls}
mkdir -p "$dir"; cd "$dir"
[ -s ca.pem ] && [ -s ec.pem ] && [ -s rsa.pem ] && exit 0
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem \
    -out ca.pem -days 30 -subj /CN=wsedge-bench-ca \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign 2>/dev/null
for kind in ec rsa; do
    case $kind in
        ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256);;
        rsa) newkey=(-newkey rsa:2048);;
    esac
    openssl req -new "${newkey[@]}" -nodes -keyout $kind-key.pem -out $kind.csr \
        -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:false\nextendedKeyUsage=serverAuth\n' > $kind.ext
    openssl x509 -req -in $kind.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
        -extfile $kind.ext -out $kind.pem 2>/dev/null
    rm -f $kind.csr $kind.ext
done
