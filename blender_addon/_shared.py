"""Where the add-on finds the wire layer.

The built extension bundles ``shared/`` as a sub-package of the add-on, so it is
imported relatively and nothing is added to Blender's top-level modules. Run
from a checkout (tests, development), the repository's top-level ``shared``
package is used. Add a submodule here when the add-on needs one.
"""

try:
    from .shared import (arkit, avatar, camera, client, codec, endpoints, errors, expression,  # noqa: F401
                         passes, photo, png, protocol, stylize, text_avatar)  # (bundled extension)
except ImportError:
    from shared import (arkit, avatar, camera, client, codec, endpoints, errors, expression,  # noqa: F401
                        passes, photo, png, protocol, stylize, text_avatar)  # (repository checkout)
