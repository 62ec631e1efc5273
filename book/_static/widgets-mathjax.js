/* The widget manager (_static/widgets/embed.js) typesets a control's label with MathJax 2's
   API, MathJax.Hub.Queue; the book runs MathJax 3, which has no Hub, so every label threw.
   Give MathJax 3 a Hub whose Queue asks it to typeset the element. MathJax 3 replaces the
   window.MathJax object when it loads, so the Hub is added again once the page has loaded. */
(function () {
  function typeset(job) {
    var el = Array.isArray(job) ? job[2] : null;
    if (el && window.MathJax && window.MathJax.typesetPromise) {
      window.MathJax.typesetPromise([el]).catch(function () {});
    }
  }
  function addHub() {
    if (window.MathJax && !window.MathJax.Hub) {
      window.MathJax.Hub = { Queue: typeset };
    }
  }
  addHub();
  document.addEventListener("DOMContentLoaded", addHub);
  window.addEventListener("load", addHub);
})();
