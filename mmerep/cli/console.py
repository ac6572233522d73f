"""`mme-rep console`: start the web console (the app itself is mmerep.console)."""

from __future__ import annotations

import typer

HELP = """A web console in your browser: environments live, scale, roll back, delete.

It listens on 127.0.0.1 and acts with your kubeconfig identity (RBAC decides what
you may do). The address it prints carries a random token; without it nothing is
served. Its plots (executors, queue, each job's CPU use, reads from the data
lake) come from the Prometheus the profile names (its `prometheus` address),
else from the environment's monitor, kept while the console runs.

\b
Examples:
  mme-rep console                          # profile local, any free port
  mme-rep console -F dev-s3 --port 8765 --open
  mme-rep profile add dev-s3 --prometheus http://prometheus.example.org:9090 \\
    --from-file dev-s3.yaml --replace        # plots with an hour's history
"""

# One command, no sub-commands: its usage line is "mme-rep console [OPTIONS]".
app = typer.Typer(help=HELP, add_completion=False, rich_markup_mode=None)


@app.command(help=HELP, no_args_is_help=False)
def console_cmd(
    profile_name: str = typer.Option("local", "--profile", "-F", metavar="NAME",
                                     help="Deployment profile (its cluster and "
                                     "namespace)."),
    profiles_file: str | None = typer.Option(None, "--profiles", metavar="FILE",
                                             help="Profiles file."),
    port: int = typer.Option(0, "--port", min=0, max=65535, metavar="PORT",
                             help="Port to listen on; 0 (the default): any free one."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS",
                             help="Address to listen on. Anything but a loopback address "
                             "exposes the console to your network."),
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
