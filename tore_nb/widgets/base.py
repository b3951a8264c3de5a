"""The view base class: a text form, an HTML form, and an ipywidgets form built on first display.

`View` gives every view `str(view)`, `_repr_html_`, a mime bundle with the live widget when in a
Jupyter kernel, and `display()`. Neither IPython nor ipywidgets is imported until a view is
displayed in a kernel.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("tore_nb.widgets")


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets can render), False in a terminal or script.

    >>> in_kernel()
    False
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def widgets_available() -> bool:
    """Whether ipywidgets can be imported (the notebook extra is installed).

    >>> isinstance(widgets_available(), bool)
    True
    """
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def ipywidgets_module() -> Any:
    """The ipywidgets module; `ExtraMissing` names the extra to install where it is not.

    >>> ipywidgets_module().__name__  # doctest: +SKIP
    'ipywidgets'
    """
    from ..errors import require

    return require("ipywidgets", "notebook")


class View:
    """A text form, an HTML form, and an ipywidgets form built only when displayed in a kernel.

    >>> class Hello(View):
    ...     def to_text(self) -> str:
    ...         return "hello"
    >>> str(Hello())
    'hello'
    """

    _widget: Any = None

    def to_text(self) -> str:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def _build(self) -> Any:
        raise NotImplementedError

    def widget(self) -> Any:
        """The ipywidgets view (built on first use; needs `tore_nb[notebook]`)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    _handle: Any = None

    def display(self) -> None:
        """Show the view: the live widget in a kernel, the text form elsewhere."""
        if in_kernel():
            from IPython.display import display

            self._handle = display(self, display_id=True)  # type: ignore[no-untyped-call]
        else:
            print(self.to_text())

    def _update_display(self) -> None:
        """Refresh the output shown by `display()`: its saved text and HTML forms follow too."""
        if self._handle is not None:
            try:
                self._handle.update(self)
            except Exception:  # a view must never break the user's code
                log.debug("display update failed", exc_info=True)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_text())

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": self.to_text(), "text/html": self.to_html()}
        if in_kernel() and widgets_available():
            view = self.widget()._repr_mimebundle_()
            key = "application/vnd.jupyter.widget-view+json"
            if key in view:
                bundle[key] = view[key]
        return bundle
