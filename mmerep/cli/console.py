"""`mme-rep console`: start the web console (the app itself is mmerep.console)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="A web console in your browser: environments live, scale, roll back, delete.\n\n"
    "It listens on 127.0.0.1 and acts with your kubeconfig identity (RBAC decides what you "
    "may do). The address it prints carries a random token; without it nothing is served.\n\n"
    "Examples:\n\n"
    "  mme-rep console                    # the local profile, any free port\n\n"
    "  mme-rep console -F dev-s3 --port 8765 --open",
    no_args_is_help=False,
    invoke_without_command=True,
)


@app.callback(invoke_without_command=True)
def console_cmd(
    profile_name: str = typer.Option("local", "--profile", "-F", help="Deployment profile "
                                     "(target)."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port (default: any free "
                             "one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but "
                             "a loopback address exposes the console to your network."),
    open_browser: bool = typer.Option(False, "--open", help="Open it in your web browser."),
) -> None:
    """Start the web console and print its address (with the token)."""
    from mmerep.cli.output import console
    from mmerep.console import Console, serve
    from mmerep.kube import Kube
    from mmerep.profiles import get_profile

    profile = get_profile(profile_name, profiles_file)
    kube = Kube.from_kubeconfig(profile.kubeconfig, profile.context,
                                namespace=profile.namespace)

    def ready(url: str) -> None:
        console.print(f"mme-rep console for profile {profile.name} "
                      f"(namespace {profile.namespace}): {url}", soft_wrap=True)
        console.print("Stop it with Ctrl-C.")
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    serve(Console(kube, profile.namespace, profile=profile),
          host=host, port=port, on_ready=ready)
