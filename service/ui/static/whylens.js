// Keyboard shortcut: "/" focuses the request-ID search box (the pages work without script).
document.addEventListener("keydown", function (event) {
  var target = event.target;
  var typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" ||
                          target.tagName === "TEXTAREA");
  if (event.key === "/" && !typing) {
    var box = document.getElementById("request-id-search");
    if (box) { event.preventDefault(); box.focus(); box.select(); }
  }
});
