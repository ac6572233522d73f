import sys

if sys.argv[1:3] == ["ssh", "proxy"]:  # once per SSH connection: skip the CLI framework
    from mmerep.ssh.proxy import main as proxy_main

    code = proxy_main(sys.argv[3:])
    if code is not None:
        sys.exit(code)

from mmerep.cli import main

if __name__ == "__main__":
    main()
