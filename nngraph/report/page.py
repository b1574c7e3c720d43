"""The HTML page around the report's sections: one file, its style and script
inline, no external URL (it opens offline, from a mail attachment or a CI
artifact). The script does three small things: hover shows a node's op, type,
file:line and kernels (read from the JSON table the page embeds); wheel and drag
zoom and pan a graph; the view buttons switch between the graph as built, after
the passes, and the collapsed view with one box per kernel (clicking a kernel
there opens it: the graph after the passes, zoomed to that kernel's nodes, the
others dimmed; so does opening the file with #k3 at the end of its address). It records its own
errors on <body data-errors> and sets <body data-ready> when done (tests read
both)."""
from __future__ import annotations

import json
from html import escape

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2125;background:#fff}
header{padding:10px 18px;background:#263238;color:#fff}header h1{font-size:18px;margin:0}
header .facts{font-size:13px;color:#cfd8dc}
main{padding:8px 18px 40px}section{margin:18px 0}h2{font-size:16px;border-bottom:1px solid #cfd8dc}
.views button{margin-right:6px;padding:3px 10px;border:1px solid #90a4ae;background:#fff;border-radius:4px;cursor:pointer}
.views button.on{background:#37474f;color:#fff}
.gbox{position:relative;height:70vh;border:1px solid #cfd8dc;border-radius:4px;overflow:hidden;background:#fafafa}
.gbox svg{width:100%;height:100%;display:none;cursor:grab}.gbox svg.on{display:block}
svg .edges{fill:none;stroke:#90a4ae;stroke-width:1.2}
svg rect{stroke:#546e7a;stroke-width:1}svg .multi rect{stroke-dasharray:4 2}
svg text{font:11px monospace;text-anchor:middle;pointer-events:none;fill:#102027}
svg g.node:hover rect,svg g.kernel:hover rect{stroke:#d50000;stroke-width:2.5}
svg g.dim{opacity:.25}
svg g.region rect{fill-opacity:.3;stroke-width:1.5}svg g.region text{font-weight:bold}
#tip{position:fixed;display:none;background:#263238;color:#fff;padding:6px 8px;border-radius:4px;
font:12px monospace;pointer-events:none;z-index:9;white-space:pre;max-width:60vw}
pre{background:#f5f7f8;padding:8px;overflow:auto;font-size:12px;max-height:60vh}
pre.diff .add{color:#1b5e20;background:#e8f5e9}pre.diff .del{color:#b71c1c;background:#ffebee}pre.diff .hunk{color:#6a1b9a}
details{margin:3px 0}summary{cursor:pointer}.muted{color:#78909c}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #546e7a;margin-right:6px;vertical-align:-1px}
.computes{font-size:12px;color:#455a64;margin-left:20px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #cfd8dc;padding:2px 6px;text-align:left}
th{background:#eceff1}
.bar{display:flex;align-items:center;font-size:12px;margin:2px 0}.bl{width:240px;overflow:hidden;white-space:nowrap}
.bt{flex:0 0 40%;height:12px;background:#eceff1;margin:0 8px}.bf{display:block;height:100%;background:#1e88e5}
.chart{display:inline-block;margin:4px 12px 12px 0;vertical-align:top}.chart svg{background:#fafafa;border:1px solid #cfd8dc}
"""

JS = r"""
(function(){
var B=document.body;window.addEventListener('error',function(e){B.dataset.errors=(B.dataset.errors||'')+e.message+';';});
var DATA=JSON.parse(document.getElementById('nodes-data').textContent);
var tip=document.getElementById('tip');
function fit(svg){var box=svg.parentNode.getBoundingClientRect(),w=+svg.dataset.w,h=+svg.dataset.h;
 var s=Math.max(Math.min(1.2,box.width/w),0.45),vw=box.width/s,vh=box.height/s;
 var x=w<vw?(w-vw)/2:-10;svg.setAttribute('viewBox',[x,-10,vw,vh].join(' '));}
function zoom(svg){var drag=null;
 svg.addEventListener('wheel',function(e){e.preventDefault();var v=svg.viewBox.baseVal,r=svg.getBoundingClientRect();
  var f=e.deltaY>0?1.15:1/1.15,px=v.x+(e.clientX-r.left)/r.width*v.width,py=v.y+(e.clientY-r.top)/r.height*v.height;
  svg.setAttribute('viewBox',[px-(px-v.x)*f,py-(py-v.y)*f,v.width*f,v.height*f].join(' '));},{passive:false});
 svg.addEventListener('mousedown',function(e){drag=[e.clientX,e.clientY];});
 window.addEventListener('mouseup',function(){drag=null;});
 svg.addEventListener('mousemove',function(e){if(!drag)return;var v=svg.viewBox.baseVal,r=svg.getBoundingClientRect();
  var dx=(e.clientX-drag[0])*v.width/r.width,dy=(e.clientY-drag[1])*v.height/r.height;drag=[e.clientX,e.clientY];
  svg.setAttribute('viewBox',[v.x-dx,v.y-dy,v.width,v.height].join(' '));});}
function hover(svg){var rows=DATA[svg.id]||[];
 svg.addEventListener('mouseover',function(e){var g=e.target.closest('g.node,g.kernel');if(!g){tip.style.display='none';return;}
  var t;if(g.dataset.i!==undefined){var r=rows[+g.dataset.i];
   t='%'+r[0]+' = '+r[1]+' : '+r[2]+(r[5]?'\nname: '+r[5]:'')+'\nbuilt at '+r[3]+(r[4].length?'\nkernel: '+r[4].join(', '):'');}
  else{var k=document.getElementById('kernel-'+g.dataset.k);t=k?k.querySelector('summary').textContent:'';}
  tip.textContent=t;tip.style.display='block';});
 svg.addEventListener('mousemove',function(e){tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+10)+'px';});
 svg.addEventListener('mouseleave',function(){tip.style.display='none';});
 svg.addEventListener('click',function(e){var g=e.target.closest('g.node,g.kernel');
  var k=g&&(g.getAttribute('class').match(/\bk\d+\b/)||[])[0];
  if(g&&g.dataset.k!==undefined&&document.getElementById('g-opt')){expand(k);return;}
  highlight(svg,k);});}
function highlight(svg,k){var all=svg.querySelectorAll('g.node,g.kernel');
 for(var i=0;i<all.length;i++){var c=all[i].getAttribute('class').replace(/ dim/g,'');
  all[i].setAttribute('class',k&&!new RegExp('\\b'+k+'\\b').test(c)?c+' dim':c);}}
function expand(k){var o=document.getElementById('g-opt');show('g-opt');highlight(o,k);
 var ms=o.querySelectorAll('g.'+k);if(!ms.length)return;var x0=1e9,y0=1e9,x1=-1e9,y1=-1e9;
 for(var i=0;i<ms.length;i++){var b=ms[i].getBBox();x0=Math.min(x0,b.x);y0=Math.min(y0,b.y);
  x1=Math.max(x1,b.x+b.width);y1=Math.max(y1,b.y+b.height);}
 var box=o.parentNode.getBoundingClientRect(),w=Math.max(x1-x0+200,(y1-y0+100)*box.width/box.height,box.width/1.2),h=w*box.height/box.width;
 o.setAttribute('viewBox',[(x0+x1-w)/2,(y0+y1-h)/2,w,h].join(' '));}
var svgs=document.querySelectorAll('.gbox svg');
function show(id){for(var i=0;i<svgs.length;i++){svgs[i].classList.toggle('on',svgs[i].id===id);}
 var bs=document.querySelectorAll('.views button');for(var j=0;j<bs.length;j++){bs[j].classList.toggle('on',bs[j].dataset.view===id);}
 var s=document.getElementById(id);if(s&&!s.dataset.fitted){fit(s);s.dataset.fitted='1';}}
for(var i=0;i<svgs.length;i++){zoom(svgs[i]);hover(svgs[i]);}
var bs=document.querySelectorAll('.views button');
for(var j=0;j<bs.length;j++){bs[j].addEventListener('click',function(e){show(e.target.dataset.view);});}
if(svgs.length){show(document.querySelector('.views button.on')?document.querySelector('.views button.on').dataset.view:svgs[0].id);
 var r=document.querySelector('.gbox').getBoundingClientRect();B.dataset.graphRect=[r.left,r.top,r.width,r.height].map(Math.round).join(',');}
var m=location.hash.match(/^#k(\d+)$/);if(m&&document.getElementById('g-opt'))expand('k'+m[1]);
B.dataset.ready='1';
})();
"""


def graph_views(views: list, default: str) -> str:
    """Buttons and one box holding the SVGs: views are (id, button label, svg)."""
    buttons = "".join(f'<button data-view="{vid}"{" class=on" if vid == default else ""}>{escape(label)}</button>'
                      for vid, label, _ in views)
    return f'<div class="views">{buttons}</div><div class="gbox">{"".join(s for _, _, s in views)}</div>'


def page(title: str, facts: str, sections: list, node_data: dict) -> str:
    """The whole document. sections: (id, heading, html); node_data: svg id -> hover rows."""
    body = "".join(f'<section id="{sid}"><h2>{escape(head)}</h2>{html}</section>' for sid, head, html in sections)
    data = json.dumps(node_data, separators=(",", ":")).replace("</", "<\\/")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><div class=facts>{facts}</div></header><main>{body}</main>"
            f'<div id="tip"></div><script type="application/json" id="nodes-data">{data}</script>'
            f"<script>{JS}</script></body></html>\n")
