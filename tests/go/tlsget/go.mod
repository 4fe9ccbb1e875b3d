module tlsget

go 1.19
